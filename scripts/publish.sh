# publish_ready_to_run PROJECT NAME: dotnet publish src/PROJECT (a path relative to src/) ReadyToRun (JIT under TCG is 20-40x
# slower) into artifacts/publish/NAME and prints the path of its binary NAME. Sourced by
# tests/kernel/run.sh and scripts/demo.sh, which run the binaries natively or in the ublk VM.
publish_ready_to_run() {
  local out
  out=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/artifacts/publish/$2
  dotnet publish "$(dirname "${BASH_SOURCE[0]}")/../src/$1" -c Release -r linux-x64 --self-contained false -p:PublishReadyToRun=true \
    -o "$out" -v quiet -nologo >&2
  echo "$out/$2"
}
