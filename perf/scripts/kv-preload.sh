# Sourced by the KV benchmark scripts: kv_preload_resp FILE writes the RESP
# commands that set redis-benchmark's 100,000 keys (-r 100000, key:%012d) to
# 100-byte values, so GET and SET runs meet existing keys.
kv_preload_resp() {
    awk -v n=100000 'BEGIN { v = sprintf("%0100d", 0); gsub(/0/, "x", v)
      for (i = 0; i < n; i++) printf "*3\r\n$3\r\nSET\r\n$16\r\nkey:%012d\r\n$100\r\n%s\r\n", i, v }' >"$1"
}
