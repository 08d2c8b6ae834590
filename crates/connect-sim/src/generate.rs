//! Values the simulator invents: item/field/file ids and generated passwords.

use rand::Rng;
use rand::seq::{IndexedRandom, SliceRandom};
use sha2::{Digest, Sha256};

use onepassword_connect::models::{CharacterSet, GeneratorRecipe};

const ID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const LETTERS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const DIGITS: &str = "0123456789";
const SYMBOLS: &str = "!#$%&*+-.:;<=>?@^_~";
pub const DEFAULT_LENGTH: u32 = 32;

/// A fresh random id of the real shape (`^[a-z0-9]{26}$`).
pub fn random_id() -> String {
    let mut rng = rand::rng();
    (0..26)
        .map(|_| *ID_ALPHABET.choose(&mut rng).expect("alphabet") as char)
        .collect()
}

/// A stable id derived from names, so that example data keeps its ids across restarts.
pub fn stable_id(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let digest = hasher.finalize();
    // 26 of the 32 digest bytes, each mapped onto 36 symbols (slightly biased; fine for ids).
    digest
        .iter()
        .take(26)
        .map(|b| ID_ALPHABET[*b as usize % ID_ALPHABET.len()] as char)
        .collect()
}

/// A generated value and its entropy in bits.
pub struct Generated {
    pub value: String,
    pub entropy: f64,
}

/// Generates a value from a recipe (32 letters, digits and symbols by default). Every
/// requested character set is represented when the length allows it.
pub fn generate(recipe: Option<&GeneratorRecipe>) -> Result<Generated, String> {
    let length = recipe.and_then(|r| r.length).unwrap_or(DEFAULT_LENGTH);
    if !(1..=64).contains(&length) {
        return Err(format!("recipe length must be between 1 and 64, got {length}"));
    }
    let mut sets: Vec<&CharacterSet> = recipe.map(|r| r.character_sets.iter().collect()).unwrap_or_default();
    if sets.is_empty() {
        sets = vec![&CharacterSet::Letters, &CharacterSet::Digits, &CharacterSet::Symbols];
    }
    let exclude = recipe.map(|r| r.exclude_characters.as_str()).unwrap_or("");
    let mut pools: Vec<Vec<char>> = Vec::new();
    for set in sets {
        let chars = match set {
            CharacterSet::Letters => LETTERS,
            CharacterSet::Digits => DIGITS,
            CharacterSet::Symbols => SYMBOLS,
            CharacterSet::Unknown(other) => return Err(format!("unknown character set {other:?}")),
        };
        let pool: Vec<char> = chars.chars().filter(|c| !exclude.contains(*c)).collect();
        if !pool.is_empty() && !pools.contains(&pool) {
            pools.push(pool);
        }
    }
    let all: Vec<char> = pools.iter().flatten().copied().collect();
    if all.is_empty() {
        return Err("the recipe excludes every character it allows".into());
    }
    let mut rng = rand::rng();
    let mut chars: Vec<char> = Vec::with_capacity(length as usize);
    if pools.len() <= length as usize {
        for pool in &pools {
            chars.push(*pool.choose(&mut rng).expect("non-empty pool"));
        }
    }
    while chars.len() < length as usize {
        chars.push(all[rng.random_range(0..all.len())]);
    }
    chars.shuffle(&mut rng);
    Ok(Generated {
        value: chars.into_iter().collect(),
        entropy: f64::from(length) * (all.len() as f64).log2(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use onepassword_connect::models::is_valid_id;

    fn recipe(length: u32, sets: &[CharacterSet], exclude: &str) -> GeneratorRecipe {
        GeneratorRecipe {
            length: Some(length),
            character_sets: sets.to_vec(),
            exclude_characters: exclude.into(),
        }
    }

    #[test]
    fn ids_have_the_real_shape_and_stable_ids_are_stable() {
        assert!(is_valid_id(&random_id()));
        assert_ne!(random_id(), random_id());
        assert!(is_valid_id(&stable_id(&["vault", "Demo"])));
        assert_eq!(stable_id(&["vault", "Demo"]), stable_id(&["vault", "Demo"]));
        assert_ne!(stable_id(&["vault", "Demo"]), stable_id(&["vault", "Dem", "o"]));
    }

    #[test]
    fn default_recipe_is_32_chars_of_all_sets() {
        let g = generate(None).unwrap();
        assert_eq!(g.value.chars().count(), 32);
        assert!(g.value.chars().any(|c| c.is_ascii_alphabetic()));
        assert!(g.value.chars().any(|c| c.is_ascii_digit()));
        assert!(g.value.chars().any(|c| SYMBOLS.contains(c)));
        assert!(g.entropy > 150.0);
    }

    #[test]
    fn recipes_are_honoured() {
        let g = generate(Some(&recipe(12, &[CharacterSet::Digits], "0123"))).unwrap();
        assert_eq!(g.value.len(), 12);
        assert!(g.value.chars().all(|c| ('4'..='9').contains(&c)), "{}", g.value);
        assert!(generate(Some(&recipe(0, &[], ""))).is_err());
        assert!(generate(Some(&recipe(65, &[], ""))).is_err());
        assert!(generate(Some(&recipe(8, &[CharacterSet::Digits], DIGITS))).is_err());
    }
}
