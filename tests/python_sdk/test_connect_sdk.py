"""The official 1Password Connect Python SDK (onepasswordconnectsdk 2.1.0), unmodified,
against the simulator: proof that the simulator speaks the real protocol."""

import asyncio
import base64
import hashlib
import hmac
import struct
import time

import pytest
from onepasswordconnectsdk import load_dict, new_client
from onepasswordconnectsdk.errors import FailedToRetrieveItemException
from onepasswordconnectsdk.models import Field, GeneratorRecipe, Item, ItemVault, Section


def vault_id(client):
    return client.get_vault_by_title("SDK Vault").id


def test_vaults_and_vault_by_title(connect_url):
    client = new_client(connect_url, "sdk-token")
    names = sorted(v.name for v in client.get_vaults())
    assert names == ["Other Vault", "SDK Vault"]
    vault = client.get_vault_by_title("sdk vault")  # `name eq` is case-insensitive
    assert vault.name == "SDK Vault"
    assert client.get_vault(vault.id).content_version >= 1
    reader = new_client(connect_url, "sdk-read-token")
    assert [v.name for v in reader.get_vaults()] == ["SDK Vault"]


def test_items_with_filters(connect_url):
    client = new_client(connect_url, "sdk-token")
    vid = vault_id(client)
    assert [i.title for i in client.get_items(vid, 'title eq "Login Item"')] == ["Login Item"]
    assert [i.title for i in client.get_items(vid, 'tag eq "sdk"')] == ["Login Item"]
    assert len(client.get_items(vid)) == 4


def test_item_by_id_and_by_title(connect_url):
    client = new_client(connect_url, "sdk-token")
    vid = vault_id(client)
    by_title = client.get_item("Login Item", "SDK Vault")
    assert by_title.title == "Login Item"
    by_id = client.get_item(by_title.id, vid)
    assert {f.label: f.value for f in by_id.fields}["password"] == "sdk-password"
    assert by_id.urls[0].href == "https://login.example"
    # A 26-character title looks like an id: the SDK falls back to the title after a 404.
    id_like = client.get_item("abcdefghijklmnopqrstuvwxyz", vid)
    assert id_like.title == "abcdefghijklmnopqrstuvwxyz"
    with pytest.raises(FailedToRetrieveItemException):
        client.get_item_by_title("No Such Item", vid)


def test_create_update_delete(connect_url):
    client = new_client(connect_url, "sdk-token")
    vid = vault_id(client)
    item = Item(
        vault=ItemVault(id=vid),
        title="Created by the SDK",
        category="LOGIN",
        tags=["made-by-sdk"],
        sections=[Section(id="extra", label="Extra")],
        fields=[
            Field(value="new-user", purpose="USERNAME"),
            Field(purpose="PASSWORD", generate=True, recipe=GeneratorRecipe(length=40, character_sets=["LETTERS", "DIGITS"])),
            Field(label="region", value="eu", section={"id": "extra"}),
        ],
    )
    created = client.create_item(vid, item)
    assert created.id and created.version == 1
    fields = {f.purpose or f.label: f for f in created.fields}
    assert len(fields["PASSWORD"].value) == 40 and fields["PASSWORD"].value.isalnum()
    assert "NOTES" in fields, "the LOGIN template adds notesPlain"
    assert fields["region"].section.id == "extra"

    created.title = "Renamed by the SDK"
    updated = client.update_item(created.id, vid, created)
    assert updated.title == "Renamed by the SDK" and updated.version == 2

    client.delete_item(created.id, vid)
    with pytest.raises(FailedToRetrieveItemException) as raised:
        client.get_item_by_id(created.id, vid)
    assert raised.value.status_code == 404


def test_files_and_file_content(connect_url, tmp_path):
    client = new_client(connect_url, "sdk-token")
    vid = vault_id(client)
    item = client.get_item("File Item", vid)
    files = client.get_files(item.id, vid)
    assert [f.name for f in files] == ["notes.txt"]
    one = client.get_file(files[0].id, item.id, vid)
    assert one.size == len("file body from the simulator")
    assert client.get_file_content(one.id, item.id, vid) == b"file body from the simulator"
    client.download_file(one.id, item.id, vid, str(tmp_path))
    assert (tmp_path / "notes.txt").read_bytes() == b"file body from the simulator"


def test_load_dict_resolves_fields(connect_url):
    client = new_client(connect_url, "sdk-token")
    values = load_dict(client, {"password": {"opitem": "Login Item", "opfield": ".password", "opvault": vault_id(client)}})
    assert values == {"password": "sdk-password"}


def test_read_only_token_cannot_write(connect_url):
    reader = new_client(connect_url, "sdk-read-token")
    vid = reader.get_vault_by_title("SDK Vault").id
    with pytest.raises(Exception) as raised:
        reader.create_item(vid, Item(vault=ItemVault(id=vid), title="nope", category="LOGIN", fields=[]))
    assert "401" in str(raised.value)


def test_invalid_token_is_rejected(connect_url):
    with pytest.raises(Exception) as raised:
        new_client(connect_url, "wrong-token").get_vaults()
    assert "401" in str(raised.value)


def test_async_client(connect_url):
    async def scenario():
        client = new_client(connect_url, "sdk-token", is_async=True)
        vault = await client.get_vault_by_title("SDK Vault")
        items = await client.get_items(vault.id, 'title eq "Login Item"')
        assert [i.title for i in items] == ["Login Item"]
        item = await client.get_item("Login Item", vault.id)
        created = await client.create_item(
            vault.id, Item(vault=ItemVault(id=vault.id), title="Async item", category="PASSWORD", fields=[Field(purpose="PASSWORD", generate=True)])
        )
        assert created.version == 1
        await client.delete_item(created.id, vault.id)
        doc = await client.get_item("File Item", vault.id)
        files = await client.get_files(doc.id, vault.id)
        content = await client.get_file_content(files[0].id, doc.id, vault.id)
        await client.session.aclose()
        return item, content

    item, content = asyncio.run(scenario())
    assert {f.label: f.value for f in item.fields}["username"] == "sdk-user"
    assert content == b"file body from the simulator"


def rfc6238(secret_base32, at, step=30, digits=6):
    """TOTP from the RFC, with the standard library only: an implementation the simulator's
    does not share."""
    key = base64.b32decode(secret_base32 + "=" * (-len(secret_base32) % 8))
    digest = hmac.new(key, struct.pack(">Q", int(at) // step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    code = (struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF) % 10**digits
    return str(code).zfill(digits)


def test_otp_fields_carry_the_current_code(connect_url):
    client = new_client(connect_url, "sdk-token")
    before = time.time()
    item = client.get_item_by_title("OTP Item", vault_id(client))
    after = time.time()
    otp = next(f for f in item.fields if f.label == "one-time password")
    assert otp.value.startswith("otpauth://totp/")
    expected = {rfc6238("JBSWY3DPEHPK3PXP", before), rfc6238("JBSWY3DPEHPK3PXP", after)}
    assert otp.totp in expected
