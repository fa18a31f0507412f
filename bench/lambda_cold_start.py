"""Cold initialisation of each Lambda artifact: from process start until the function asks
the Runtime API for its first event (GET /2018-06-01/runtime/invocation/next), against a
minimal Runtime API on 127.0.0.1 — the same moment AWS counts as the end of Init.

    python3 bench/lambda_cold_start.py [ZIP_DIR] [RUNS]     # ZIP_DIR: target/lambda

Prints one line per function: zip size, median and max init time over RUNS cold starts.
"""
import http.server
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile

ZIP_DIR = sys.argv[1] if len(sys.argv) > 1 else "target/lambda"
RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 20
# One crate per function under lambdas/ (src/functions.rs is the list).
FUNCTIONS = sorted(os.listdir(os.path.join(os.path.dirname(__file__), "..", "lambdas")))

asked = threading.Event()
asked_at = [0.0]


class RuntimeApi(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        if self.path.endswith("/runtime/invocation/next") and not asked.is_set():
            asked_at[0] = time.perf_counter()
            asked.set()
        # Never hand out an event: the process is stopped once it has asked.
        time.sleep(5)

    def log_message(self, *args):
        pass


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RuntimeApi)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(
        os.environ,
        AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.server_address[1]}",
        AWS_LAMBDA_FUNCTION_NAME="cold-start",
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE="256",
        AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
        AWS_LAMBDA_LOG_STREAM_NAME="stream",
        AWS_LAMBDA_LOG_GROUP_NAME="group",
        AWS_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="cold",
        AWS_SECRET_ACCESS_KEY="start",
        TABLE_NAME="covid-etl-bench",
        TOPIC_ARN="arn:aws:sns:us-east-1:123456789012:covid-etl-bench",
        STATE_MACHINE_ARN="arn:aws:states:us-east-1:123456789012:stateMachine:covid-etl-bench",
        RUST_LOG="warn",
    )
    env.pop("COVID_ETL_DB", None)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'function':<14} {'zip bytes':>10} {'median ms':>10} {'max ms':>8}")
        for name in FUNCTIONS:
            zip_path = os.path.join(ZIP_DIR, name, f"{name}.zip")
            with zipfile.ZipFile(zip_path) as z:
                z.extract("bootstrap", os.path.join(tmp, name))
            binary = os.path.join(tmp, name, "bootstrap")
            os.chmod(binary, 0o755)
            times = []
            for _ in range(RUNS):
                asked.clear()
                start = time.perf_counter()
                proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                if not asked.wait(10):
                    proc.kill()
                    sys.exit(f"{name}: never asked for an event")
                times.append((asked_at[0] - start) * 1000)
                proc.kill()
                proc.wait()
            size = os.path.getsize(zip_path)
            print(f"{name:<14} {size:>10} {statistics.median(times):>10.1f} {max(times):>8.1f}")
    server.shutdown()


if __name__ == "__main__":
    main()
