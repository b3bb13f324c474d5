# Sourced by the scripts that run Keel against RocksDB's db_bench (from the
# repository root): installs db_bench when missing, builds keel-perf, sets
# PERF and prints the run's date and db_bench version.
if ! command -v db_bench >/dev/null; then
    echo "== installing rocksdb-tools (db_bench)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rocksdb-tools
fi
cargo build --release -q -p keel-perf
PERF=target/release/keel-perf
date -u +"# %Y-%m-%d %H:%M UTC"
echo "# db_bench: $(dpkg-query -W -f='${Package} ${Version}' rocksdb-tools 2>/dev/null || echo unknown)"
