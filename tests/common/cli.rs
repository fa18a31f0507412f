//! The command-line binary and the fixtures, for the tests that run `covid-etl`.

use assert_cmd::Command;
use std::path::{Path, PathBuf};

/// `fixtures/NAME` as a path string, as the CLI takes it.
pub fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
        .display()
        .to_string()
}

/// `covid-etl` on database `db`, without the caller's log filter.
pub fn cli(db: &Path) -> Command {
    let mut cmd = Command::cargo_bin("covid-etl").unwrap();
    cmd.env("COVID_ETL_DB", db).env_remove("RUST_LOG");
    cmd
}

/// A source server on 127.0.0.1 for `…/us.csv`: the n-th request gets `replies[n]` (the last
/// repeats), answered on its own thread by `answer(reply, request head in lower case,
/// stream)`, so a stalled answer holds no other. Returns the URL and the request count.
pub fn source_server<R: Clone + Send + 'static>(
    replies: Vec<R>,
    answer: impl Fn(R, &str, &mut std::net::TcpStream) + Send + Sync + 'static,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::BufRead;
    use std::sync::atomic::Ordering;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/us.csv", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    let answer = std::sync::Arc::new(answer);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let reply = replies[n.min(replies.len() - 1)].clone();
            let answer = answer.clone();
            std::thread::spawn(move || {
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let (mut line, mut request) = (String::new(), String::new());
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    request.push_str(&line.to_ascii_lowercase());
                    line.clear();
                }
                answer(reply, &request, &mut stream);
            });
        }
    });
    (url, count)
}
