//! `sipua serve --web ADDR`: a small softphone page for a browser, so that a user can talk to
//! the running `serve` (its echo, or the WAV it plays) from `http://ADDR/` with no other
//! set-up. The page is SIP.js 0.21 (its `UserAgent` and `Inviter`, loaded from the npm package on disk:
//! `--sipjs DIR`, else `./node_modules/sip.js`) calling this process over its WebSocket
//! listener. The HTTP side is the least that does it: `GET` of the page and of SIP.js's files,
//! one request per connection, bounded in size, time and concurrent connections.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The page, with `@WS@` (the WebSocket URL) and `@TARGET@` (whom the Call button calls)
/// filled in when served.
const PAGE: &str = include_str!("web/softphone.html");
/// Largest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// Connections served at once; more wait for the kernel's backlog.
const MAX_CONNECTIONS: usize = 32;
/// How long a connection may take to send its request and take the answer.
const CONNECTION_TIME: Duration = Duration::from_secs(10);

/// What the page is served with.
#[derive(Debug, Clone)]
pub struct WebPage {
    /// The SIP.js package directory (holding `lib/index.js`).
    pub sipjs: PathBuf,
    /// `ws://…` or `wss://…`: serve's WebSocket listener.
    pub ws: String,
    /// The SIP URI the Call button calls.
    pub target: String,
}

/// The SIP.js package to serve: `dir` if given, else `./node_modules/sip.js`; an error says
/// how to get it.
pub fn find_sipjs(dir: Option<&Path>) -> Result<PathBuf, String> {
    let dir = dir.map_or_else(|| PathBuf::from("node_modules/sip.js"), Path::to_path_buf);
    if !dir.join("lib/index.js").is_file() {
        return Err(format!(
            "SIP.js not found in {} (run `npm install sip.js@0.21` here, or give --sipjs DIR)",
            dir.display()
        ));
    }
    let version = std::fs::read_to_string(dir.join("package.json"))
        .ok()
        .and_then(|p| {
            let v: serde_json::Value = serde_json::from_str(&p).ok()?;
            Some(v.get("version")?.as_str()?.to_owned())
        })
        .unwrap_or_default();
    if !version.starts_with("0.21.") {
        eprintln!(
            "warning: {} is SIP.js {version:?}; the page is written for 0.21",
            dir.display()
        );
    }
    Ok(dir)
}

/// Binds `addr` and serves the page until the runtime ends; returns the bound address.
pub async fn serve(addr: SocketAddr, page: WebPage) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let page = Arc::new(page);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let Ok((conn, _)) = listener.accept().await else {
                continue;
            };
            let page = page.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(CONNECTION_TIME, answer(conn, &page)).await;
                drop(permit);
            });
        }
    });
    Ok(bound)
}

/// Reads one request and answers it.
async fn answer(mut conn: TcpStream, page: &WebPage) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            return respond(
                &mut conn,
                "431 Request Header Fields Too Large",
                "text/plain",
                b"",
            )
            .await;
        }
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" {
        return respond(
            &mut conn,
            "405 Method Not Allowed",
            "text/plain",
            b"GET only\n",
        )
        .await;
    }
    let path = target.split('?').next().unwrap_or("");
    match route(path, page) {
        Some((kind, body)) => respond(&mut conn, "200 OK", kind, &body).await,
        None => respond(&mut conn, "404 Not Found", "text/plain", b"not found\n").await,
    }
}

/// What `path` serves: the page, or one of SIP.js's files.
fn route(path: &str, page: &WebPage) -> Option<(&'static str, Vec<u8>)> {
    if path == "/" || path == "/index.html" {
        let html = PAGE
            .replace("@WS@", &page.ws)
            .replace("@TARGET@", &page.target);
        return Some(("text/html; charset=utf-8", html.into_bytes()));
    }
    let rest = path.strip_prefix("/sip.js/lib/")?;
    // SIP.js's module files only: no way out of its lib directory
    let safe = !rest.is_empty()
        && rest
            .split('/')
            .all(|seg| !seg.is_empty() && !seg.starts_with('.'))
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/'));
    if !safe || !rest.ends_with(".js") {
        return None;
    }
    let body = std::fs::read(page.sipjs.join("lib").join(rest)).ok()?;
    Some(("text/javascript; charset=utf-8", body))
}

async fn respond(
    conn: &mut TcpStream,
    status: &str,
    kind: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await?;
    conn.write_all(body).await?;
    conn.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(dir: &Path) -> WebPage {
        WebPage {
            sipjs: dir.to_path_buf(),
            ws: "ws://127.0.0.1:8080".into(),
            target: "sip:echo@127.0.0.1:8080;transport=ws".into(),
        }
    }

    #[test]
    fn the_page_names_the_listener_and_sipjs_files_are_served_from_lib_only() {
        let dir = std::env::temp_dir().join(format!("sipua-web-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("lib/api")).unwrap();
        std::fs::write(dir.join("lib/index.js"), "export {};").unwrap();
        std::fs::write(dir.join("lib/api/a.js"), "export const a = 1;").unwrap();
        std::fs::write(dir.join("package.json"), r#"{"version":"0.21.2"}"#).unwrap();
        std::fs::write(dir.join("secret.js"), "no").unwrap();
        let p = page(&dir);
        let (kind, html) = route("/", &p).unwrap();
        let html = String::from_utf8(html).unwrap();
        assert!(kind.starts_with("text/html"));
        assert!(html.contains("ws://127.0.0.1:8080") && !html.contains("@WS@"));
        assert!(html.contains("sip:echo@127.0.0.1:8080;transport=ws"));
        assert_eq!(
            route("/sip.js/lib/api/a.js", &p).unwrap().1,
            b"export const a = 1;"
        );
        for refused in [
            "/sip.js/lib/../secret.js",
            "/sip.js/lib/./index.js",
            "/sip.js/lib//index.js",
            "/sip.js/lib/",
            "/sip.js/lib/api/%2e%2e/x.js",
            "/sip.js/package.json",
            "/etc/passwd",
            "/sip.js/lib/missing.js",
        ] {
            assert!(route(refused, &p).is_none(), "{refused}");
        }
        assert_eq!(find_sipjs(Some(&dir)).unwrap(), dir);
        let e = find_sipjs(Some(&dir.join("nowhere"))).unwrap_err();
        assert!(e.contains("npm install sip.js@0.21"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn it_answers_over_http_and_refuses_what_it_does_not_serve() {
        let dir = std::env::temp_dir().join(format!("sipua-web-http-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("lib")).unwrap();
        std::fs::write(dir.join("lib/index.js"), "export {};").unwrap();
        let addr = serve("127.0.0.1:0".parse().unwrap(), page(&dir))
            .await
            .unwrap();
        let get = |request: &'static str| async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(request.as_bytes()).await.unwrap();
            let mut out = String::new();
            c.read_to_string(&mut out).await.unwrap();
            out
        };
        let ok = get("GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(
            ok.starts_with("HTTP/1.1 200 OK\r\n") && ok.contains("/sip.js/lib/index.js"),
            "{ok}"
        );
        let js = get("GET /sip.js/lib/index.js HTTP/1.1\r\n\r\n").await;
        assert!(
            js.contains("text/javascript") && js.ends_with("export {};"),
            "{js}"
        );
        assert!(get("POST / HTTP/1.1\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 405"));
        assert!(get("GET /x HTTP/1.1\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 404"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
