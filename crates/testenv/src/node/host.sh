#!/usr/bin/env bash
# The host side of the one-node cluster (crates/testenv/src/node.rs): everything it changes on
# this machine outside its work directory, and the undoing of it.
#
#   host.sh WORK KUBE_PROXY
#
# Takes the machine's node lock (one such node per machine: the bridge, the /kubepods
# cgroups and kube-proxy's iptables chains have fixed names), undoes what a crashed earlier
# node left, then prepares the host: saves the kernel settings the node changes, turns on
# forwarding, and makes the pod bridge. Prints "ready", then waits until its stdin closes
# (the test process ended, however it ended) and tears everything down: the node's
# processes and containers, the mounts under WORK, the cgroups, the bridge, kube-proxy's
# rules, the kernel settings, and WORK itself. The lock is held until that is done.
set -u

LOCK=/run/opo-one-node.lock
CURRENT=/run/opo-one-node.current
BRIDGE=opo0
GATEWAY=10.244.0.1/24
SERVICE_CIDR=10.96.0.0/24
# Kernel settings the kubelet, kube-proxy and this script set.
SETTINGS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.ip_forward
  net.bridge.bridge-nf-call-iptables net.ipv4.conf.all.route_localnet)

work=$1
kube_proxy=$2

# Processes whose command line names DIR (kubelet, containerd and its shims, the other
# components and their watchdogs), but for this script.
node_processes() {
  local pid
  for pid in $(pgrep -f -- "$1"); do
    [[ $pid != "$$" && $pid != "$BASHPID" ]] && echo "$pid"
  done
}

# Every process in the pods' cgroups: the containers.
container_processes() {
  find /sys/fs/cgroup/*/kubepods -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u
}

# Removes every KUBE-* chain, and the rules that jump to them, from every table: kube-proxy's
# (`kube-proxy --cleanup` does most) and the kubelet's (KUBE-FIREWALL, canaries). No other
# Kubernetes runs on a machine with this node.
remove_kube_chains() {
  local tool table rule chain chains
  for tool in iptables ip6tables; do
    command -v "$tool" >/dev/null || continue
    for table in filter nat mangle; do
      "$tool-save" -t "$table" 2>/dev/null | grep -E '^-A [^ ]+ .*-j KUBE-' | grep -vE '^-A KUBE-' |
        sed 's/^-A /-D /' | while read -r rule; do eval "$tool -t $table $rule" 2>/dev/null; done
      chains=$("$tool-save" -t "$table" 2>/dev/null | sed -n 's/^:\(KUBE-[^ ]*\).*/\1/p')
      for chain in $chains; do "$tool" -t "$table" -F "$chain" 2>/dev/null; done
      for chain in $chains; do "$tool" -t "$table" -X "$chain" 2>/dev/null; done
    done
  done
}

teardown() {
  local dir=$1 proxy=$2 pids
  for _ in $(seq 50); do
    pids="$(node_processes "$dir") $(container_processes)"
    [[ -z ${pids// /} ]] && break
    # shellcheck disable=SC2086 # a list of pids
    kill -KILL $pids 2>/dev/null
    sleep 0.1
  done
  # Pod volumes, sandbox network namespaces, container root filesystems: deepest first.
  awk -v dir="$dir/" 'index($5, dir) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r mount; do umount -l "$mount" 2>/dev/null; done
  local hierarchy
  for hierarchy in /sys/fs/cgroup/*/; do
    [[ -d $hierarchy/kubepods ]] && find "$hierarchy/kubepods" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  ip link del "$BRIDGE" 2>/dev/null
  [[ -x $proxy ]] && "$proxy" --cleanup >/dev/null 2>&1
  remove_kube_chains
  if [[ -f $dir/host-settings ]]; then
    while read -r key value; do sysctl -qw "$key=$value" 2>/dev/null; done <"$dir/host-settings"
  fi
  rm -rf "$dir"
}

exec 9>"$LOCK"
if ! flock -w 300 9; then
  echo "busy: another one-node cluster has held $LOCK for 5 minutes"
  exit 1
fi
if [[ -s $CURRENT ]]; then
  { read -r old_work; read -r old_proxy; } <"$CURRENT"
  teardown "$old_work" "$old_proxy"
fi
printf '%s\n%s\n' "$work" "$kube_proxy" >"$CURRENT"

mkdir -p "$work"
for key in "${SETTINGS[@]}"; do
  value=$(sysctl -n "$key" 2>/dev/null) && printf '%s %s\n' "$key" "$value"
done >"$work/host-settings"
sysctl -qw net.ipv4.ip_forward=1
# Traffic between pods on the bridge must pass kube-proxy's rules (a Service's ClusterIP).
sysctl -qw net.bridge.bridge-nf-call-iptables=1
# The bridge exists before the apiserver starts, which listens on its address; the CNI
# bridge plugin takes it over.
# The Service range routes to the bridge too: a ClusterIP that kube-proxy has not programmed
# yet must not reach the machine's default gateway (which may answer anything).
if ! { ip link add "$BRIDGE" type bridge && ip addr add "$GATEWAY" dev "$BRIDGE" &&
  ip link set "$BRIDGE" up && ip route add "$SERVICE_CIDR" dev "$BRIDGE"; }; then
  echo "failed: cannot create the bridge $BRIDGE"
  teardown "$work" "$kube_proxy"
  rm -f "$CURRENT"
  exit 1
fi
echo ready

while read -r _; do :; done
teardown "$work" "$kube_proxy"
rm -f "$CURRENT"
