//! The web view, end to end: log in through a one-time link, submit, watch the graph run live,
//! read a task's output, cancel, watch a device go offline, and the page's defences (output as
//! text, cross-site POSTs refused).

use fantoccini::Locator;
use reqwest::StatusCode;
use serde_json::{Value, json};
use weft_protocol::{RequestStatus, TaskStatus};

use crate::driver::Browser;
use crate::harness::Harness;

/// A browser logged in to `h`'s web view through a fresh login link, on the requests page.
async fn logged_in(h: &Harness) -> (Browser, String) {
    let b = Browser::start().await;
    let (status, link) = h.post("/v1/ui/login-links", &json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{link}");
    let url = format!("{}{}", h.base, link["path"].as_str().unwrap());
    b.goto(&url).await;
    b.wait_for(
        "the requests page after logging in",
        "return !!document.querySelector('#submit-text');",
        vec![],
    )
    .await;
    (b, url)
}

const NODE_IS: &str =
    "const g = document.querySelector(`g.node[data-task-id=\"${arguments[0]}\"]`);
    return !!g && g.getAttribute('data-status') === arguments[1];";

async fn wait_node(b: &Browser, task: &str, status: &str) {
    b.wait_for(
        &format!("task {task} to be {status}"),
        NODE_IS,
        vec![json!(task), json!(status)],
    )
    .await;
}

async fn wait_request_status(b: &Browser, status: &str) {
    b.wait_for(
        &format!("the request to be {status}"),
        "const e = document.querySelector('#request-status');
         return !!e && e.getAttribute('data-status') === arguments[0];",
        vec![json!(status)],
    )
    .await;
}

/// Marks the current document; [`assert_same_document`] then proves no navigation or reload
/// happened in between.
async fn mark_document(b: &Browser) {
    b.js("window.__weftMarker = 'still here'; return true;", vec![])
        .await;
}

async fn assert_same_document(b: &Browser) {
    assert_eq!(
        b.js("return window.__weftMarker || null;", vec![]).await,
        json!("still here"),
        "the page was reloaded or navigated away"
    );
}

async fn open_request(b: &Browser, h: &Harness, id: &str) {
    b.goto(&format!("{}/#/requests/{id}", h.base)).await;
    b.wait_for(
        "the request page",
        "return !!document.querySelector('#request-status');",
        vec![],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_in_submit_and_watch_the_graph_run_live() {
    let h = Harness::with_three_agents().await;
    let (b, _) = logged_in(&h).await;

    // The session cookie: HttpOnly (scripts cannot read it), SameSite=Strict, Path=/.
    let cookies = b.client.get_all_cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|c| c.name() == "weft_session")
        .expect("no session cookie after following the login link");
    assert_eq!(session.http_only(), Some(true));
    assert!(
        format!("{:?}", session.same_site()).contains("Strict"),
        "{session:?}"
    );
    assert_eq!(session.path(), Some("/"));
    assert_eq!(b.js("return document.cookie;", vec![]).await, json!(""));

    mark_document(&b).await;
    let text = r#"on laptop run "sleep 2; echo built" and on server run "echo checked" then on phone run "echo notified" and on server run "echo deployed" then on laptop run "echo done""#;
    b.client
        .find(Locator::Css("#submit-text"))
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
    b.click("#submit-button").await;
    b.wait_for(
        "the new request's graph",
        "return location.hash.startsWith('#/requests/')
            && document.querySelectorAll('g.node').length === 5;",
        vec![],
    )
    .await;
    let id = b
        .js(
            "return decodeURIComponent(location.hash.slice('#/requests/'.length));",
            vec![],
        )
        .await;
    let id = id.as_str().unwrap().to_owned();

    // The last step waits while t1 sleeps; then everything turns green, live.
    wait_node(&b, "t5", "pending").await;
    wait_node(&b, "t1", "running").await;
    wait_node(&b, "t5", "succeeded").await;
    for t in ["t1", "t2", "t3", "t4"] {
        wait_node(&b, t, "succeeded").await;
    }
    wait_request_status(&b, "succeeded").await;
    assert_same_document(&b).await;
    assert_eq!(h.request(&id).await.status, RequestStatus::Succeeded);
    b.wait_for(
        "the header's task counts",
        "return document.querySelector('#request-head').textContent.includes('5 tasks: 5 succeeded');",
        vec![],
    )
    .await;
    let head = b.text_of("#request-head").await.unwrap();
    assert!(
        !head.contains("null") && !head.contains("undefined"),
        "{head}"
    );

    // Edges drawn (layout-rs), and a timeline bar for every attempt, one lane per device.
    assert_eq!(
        b.js(
            "return document.querySelectorAll('#graph path.edge').length;",
            vec![]
        )
        .await,
        json!(6)
    );
    b.wait_for(
        "five attempts on three device lanes",
        "return document.querySelectorAll('#timeline rect.bar').length === 5
            && document.querySelectorAll('#timeline .lane-label').length === 3;",
        vec![],
    )
    .await;

    // A task's panel: instruction, device, attempts, turns, output.
    b.click(r#"g.node[data-task-id="t1"] rect"#).await;
    b.wait_for(
        "t1's output",
        "const e = document.querySelector('#output-main');
         return !!e && e.textContent === 'built\\n';",
        vec![],
    )
    .await;
    let panel = b.text_of("#task-panel").await.unwrap();
    for part in [
        "t1: run `sleep 2; echo built`",
        "laptop",
        "not turn-based",
        "exit code 0",
    ] {
        assert!(
            panel.contains(part),
            "{part:?} not in the task panel: {panel}"
        );
    }
    assert_eq!(
        b.js(
            "return document.querySelectorAll('#task-attempts tbody tr').length;",
            vec![]
        )
        .await,
        json!(1)
    );
    assert_same_document(&b).await;
    let shot = b.screenshot("request").await;
    eprintln!("screenshot of the request page: {}", shot.display());

    // The list shows it, with its task counts.
    b.click("#nav-requests").await;
    b.wait_for(
        "the request in the list",
        "const r = document.querySelector(`#requests tr[data-request-id=\"${arguments[0]}\"]`);
         return !!r && r.getAttribute('data-status') === 'succeeded'
             && r.textContent.includes('5 tasks: 5 succeeded');",
        vec![json!(id)],
    )
    .await;
    assert_same_document(&b).await;
    b.screenshot("requests").await;
    b.close().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_output_is_shown_as_text_cut_with_a_way_to_see_all() {
    let h = Harness::with_three_agents().await;
    let html = "<script>window.__pwned=1</script><img src=x onerror=window.__pwned=2><b>bold</b>";
    let v = h
        .submit(&format!(
            r#"on laptop run "printf '%s\n' '{html}'; seq 1 3000""#
        ))
        .await;
    let done = h.wait_done(v.id.as_str()).await;
    assert_eq!(done.status, RequestStatus::Succeeded, "{done:#?}");
    let (b, _) = logged_in(&h).await;
    open_request(&b, &h, v.id.as_str()).await;
    wait_node(&b, "t1", "succeeded").await;

    // The title (it holds the HTML too) is text in the SVG.
    let title = b
        .text_of(r#"g.node[data-task-id="t1"] text.title"#)
        .await
        .unwrap();
    assert!(title.contains("<script>"), "{title}");

    b.click(r#"g.node[data-task-id="t1"] rect"#).await;
    b.wait_for(
        "the output block",
        "return !!document.querySelector('#output-main');",
        vec![],
    )
    .await;
    let shown = b.text_of("#output-main").await.unwrap();
    assert!(shown.starts_with(&format!("{html}\n1\n2\n3\n")), "{shown}");
    let no_markup = b
        .js(
            "return document.querySelectorAll('#task-panel img, #task-panel script, #task-panel b, #graph img, #graph script').length === 0
                && window.__pwned === undefined;",
            vec![],
        )
        .await;
    assert_eq!(
        no_markup,
        Value::Bool(true),
        "device output was interpreted as HTML"
    );
    assert!(b.client.get_alert_text().await.is_err(), "a dialog opened");

    // Long output is cut, with a button that shows all of it.
    let full: u64 = b
        .js(
            "return Number(document.querySelector('#output-main').getAttribute('data-full-length'));",
            vec![],
        )
        .await
        .as_u64()
        .unwrap();
    assert!(full > 10_000, "{full}");
    assert_eq!(
        shown.chars().count(),
        2001,
        "cut to 2,000 characters and an ellipsis"
    );
    let button = b.text_of("#show-all-main").await.unwrap();
    assert!(button.starts_with("Show all ("), "{button}");
    b.click("#show-all-main").await;
    b.wait_for(
        "the whole output",
        "const e = document.querySelector('#output-main');
         return e.textContent.length === Number(e.getAttribute('data-full-length'))
             && e.textContent.endsWith('2999\\n3000\\n');",
        vec![],
    )
    .await;
    b.close().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_a_running_request_from_the_page() {
    let h = Harness::with_three_agents().await;
    let v = h.submit(r#"on laptop run "sleep 30""#).await;
    let (b, _) = logged_in(&h).await;
    open_request(&b, &h, v.id.as_str()).await;
    wait_node(&b, "t1", "running").await;
    mark_document(&b).await;
    let started = std::time::Instant::now();
    b.click("#cancel-request").await;
    wait_request_status(&b, "cancelled").await;
    wait_node(&b, "t1", "cancelled").await;
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    assert_same_document(&b).await;
    let done = h.request(v.id.as_str()).await;
    assert_eq!(done.status, RequestStatus::Cancelled);
    assert_eq!(done.tasks[0].status, TaskStatus::Cancelled);
    // The button is gone once the request ended.
    b.wait_for(
        "the cancel button to go",
        "const e = document.querySelector('#cancel-request'); return !e || e.hidden;",
        vec![],
    )
    .await;
    b.close().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_goes_offline_live_when_its_agent_stops_and_away_when_removed() {
    let mut h = Harness::with_three_agents().await;
    let (b, _) = logged_in(&h).await;
    mark_document(&b).await;
    b.click("#nav-devices").await;
    let row_is = "const r = document.querySelector(`#devices tr[data-device=\"${arguments[0]}\"]`);
        return !!r && r.getAttribute('data-status') === arguments[1];";
    for d in ["laptop", "phone", "server"] {
        b.wait_for(
            &format!("{d} online"),
            row_is,
            vec![json!(d), json!("online")],
        )
        .await;
    }
    let row = b
        .text_of(r#"#devices tr[data-device="laptop"]"#)
        .await
        .unwrap();
    assert!(row.contains("shell"), "capabilities are listed: {row}");

    h.stop_agent(2).await.unwrap(); // phone
    b.wait_for(
        "phone offline",
        row_is,
        vec![json!("phone"), json!("offline")],
    )
    .await;
    for d in ["laptop", "server"] {
        assert_eq!(
            b.js(row_is, vec![json!(d), json!("online")]).await,
            json!(true)
        );
    }
    // A removed device's row goes, live.
    let (status, body) = h.delete("/v1/devices/server").await;
    assert_eq!(status, 200, "{body}");
    b.wait_for(
        "the removed server's row to go",
        r#"return !document.querySelector('#devices tr[data-device="server"]');"#,
        vec![],
    )
    .await;
    assert_same_document(&b).await;
    let shot = b.screenshot("devices").await;
    eprintln!("screenshot of the devices page: {}", shot.display());
    b.close().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_links_work_once_and_cross_site_posts_with_the_cookie_are_refused() {
    let h = Harness::with_three_agents().await;
    let (b, link) = logged_in(&h).await;

    // The link is used up; the session it made still works.
    b.goto(&link).await;
    b.wait_for(
        "the used link to be refused",
        "return document.body.innerText.includes('This login link does not work');",
        vec![],
    )
    .await;
    b.goto(&format!("{}/", h.base)).await;
    b.wait_for(
        "the page, still logged in",
        "return !!document.querySelector('#submit-text');",
        vec![],
    )
    .await;

    // Another site on this machine (another port: the same *site* to the browser, so the
    // SameSite=Strict cookie is sent) posts to the API with the cookie.
    let target = format!("{}/v1/requests", h.base);
    let page = format!(
        r#"<!doctype html><html><body>
<form method="post" action="{target}" enctype="text/plain">
<input type="hidden" name='{{"text": "on laptop run \"echo pwned\" and on server run \"echo' value='x\""}}'>
<button id="go" type="submit">go</button></form>
<script>
fetch("{target}", {{method: "POST", mode: "no-cors", credentials: "include",
  headers: {{"content-type": "text/plain"}}, body: JSON.stringify({{text: 'on laptop run "echo pwned2"'}})}})
  .finally(() => {{ window.__sent = true; }});
</script></body></html>"#
    );
    let evil = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let evil_url = format!("http://{}/", evil.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let page = page.clone();
            async move { axum::response::Html(page) }
        }),
    );
    let server = tokio::spawn(async move { axum::serve(evil, app).await });
    b.goto(&evil_url).await;
    b.wait_for("the fetch", "return window.__sent === true;", vec![])
        .await;
    b.click("#go").await;
    // The answer proves the cookie was sent and accepted as a session (otherwise it would be
    // `missing_api_token`), and the call refused for coming from another origin.
    b.wait_for(
        "the refusal",
        "return document.body.innerText.includes('cross_site_request');",
        vec![],
    )
    .await;
    let (status, list) = h.get("/v1/requests").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list, json!([]), "a cross-site POST created a request");
    server.abort();
    b.close().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tasks_files_are_listed_with_size_and_a_download_link() {
    let h = Harness::with_three_agents().await;
    let graph = json!({"tasks": [
        {"id": "t1", "instruction": "write a file", "device": "laptop",
         "action": {"kind": "shell", "command": "mkdir -p out && printf 'hello files' > out/note.txt"},
         "outputs": {"files": ["out/note.txt"]}},
    ]});
    let (status, body) = h
        .post("/v1/requests", &json!({"text": "files", "graph": graph}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let done = h.wait_done(&id).await;
    assert_eq!(done.status, RequestStatus::Succeeded, "{done:#?}");
    let (b, _) = logged_in(&h).await;
    open_request(&b, &h, &id).await;
    wait_node(&b, "t1", "succeeded").await;
    b.click(r#"g.node[data-task-id="t1"] rect"#).await;
    b.wait_for(
        "the files table",
        "return !!document.querySelector('#task-files a.file-link');",
        vec![],
    )
    .await;
    let row = b
        .js(
            "const r = document.querySelector('#task-files tr[data-file-name=\"out/note.txt\"]');
             const a = r.querySelector('a.file-link');
             return [a.textContent, a.getAttribute('href'), a.getAttribute('download'),
                     r.querySelector('.file-size').textContent];",
            vec![],
        )
        .await;
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"hello files"));
    assert_eq!(
        row,
        json!([
            "out/note.txt",
            format!("/v1/requests/{id}/files/{sha}"),
            "note.txt",
            "11 B"
        ])
    );
    // The link downloads the bytes with the page's session.
    let fetched = b
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch(document.querySelector('#task-files a.file-link').href, {credentials: 'same-origin'})
               .then((r) => r.text()).then(done, (e) => done(String(e)));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(fetched, json!("hello files"));
    b.close().await;
    h.stop().await;
}
