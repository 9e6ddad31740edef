//! The client against the scripted server: real HTTP on port 0.

use std::time::Duration;

use serde_json::json;

use super::*;
use crate::llm::testing::{Reply, ScriptedLlm};

fn config(base: &str) -> ClientConfig {
    let mut c = ClientConfig::new(base, "test-model");
    c.api_key = Some(Secret::new("sk-secret-123"));
    c.initial_backoff = Duration::from_millis(1);
    c.max_backoff = Duration::from_millis(5);
    c.timeout = Duration::from_secs(5);
    c
}

fn ask(text: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![Message::system("be brief"), Message::user(text)],
        json_schema: None,
        tools: Vec::new(),
        max_tokens: None,
        temperature: None,
    }
}

fn with_schema(text: &str) -> ChatRequest {
    ChatRequest {
        json_schema: Some(JsonSchema {
            name: "answer".into(),
            schema: json!({"type": "object"}),
            strict: false,
        }),
        ..ask(text)
    }
}

/// A port nothing listens on.
async fn closed_port() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}/v1")
}

#[tokio::test]
async fn completes_sends_the_key_and_reads_usage() {
    let llm = ScriptedLlm::start().await;
    llm.push(Reply::content("hello").usage(12, 3));
    let client = Client::new(config(&llm.base_url())).unwrap();
    let c = client.complete(&ask("hi")).await.unwrap();
    assert_eq!(c.text(), "hello");
    assert_eq!(
        c.usage,
        Some(Usage {
            prompt_tokens: 12,
            completion_tokens: 3
        })
    );
    assert_eq!(
        (c.tries, c.replayed, c.used_response_format),
        (1, false, false)
    );
    let got = llm.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/v1/chat/completions");
    assert_eq!(
        got[0].authorization.as_deref(),
        Some("Bearer sk-secret-123")
    );
    assert_eq!(
        got[0].body,
        json!({"model": "test-model", "messages": [
            {"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]})
    );
    assert_eq!(c.request, got[0].body);
    // The key is in no body, no completion, no Debug output.
    assert!(!format!("{client:?} {c:?}").contains("sk-secret-123"));
    llm.stop().await;
}

#[tokio::test]
async fn retries_429_and_5xx_honouring_retry_after() {
    let llm = ScriptedLlm::start().await;
    llm.push(Reply::status(429, "slow down").header("retry-after", "0"));
    llm.push(Reply::status(503, "overloaded"));
    llm.push(Reply::content("made it"));
    let client = Client::new(config(&llm.base_url())).unwrap();
    let c = client.complete(&ask("hi")).await.unwrap();
    assert_eq!((c.text(), c.tries), ("made it", 3));
    assert_eq!(llm.received().len(), 3);
    llm.stop().await;
}

#[tokio::test]
async fn retry_after_is_waited_for() {
    let llm = ScriptedLlm::start().await;
    llm.push(Reply::status(429, "slow down").header("retry-after", "0.3"));
    llm.push(Reply::content("ok"));
    let client = Client::new(config(&llm.base_url())).unwrap();
    let c = client.complete(&ask("hi")).await.unwrap();
    assert!(c.latency >= Duration::from_millis(300), "{:?}", c.latency);
    llm.stop().await;
}

#[tokio::test]
async fn gives_up_after_the_retries() {
    let llm = ScriptedLlm::start().await;
    llm.set_fallback(Reply::status(500, "the model crashed"));
    let mut cfg = config(&llm.base_url());
    cfg.max_retries = 2;
    let client = Client::new(cfg).unwrap();
    let e = client.complete(&ask("hi")).await.unwrap_err();
    assert_eq!(e.code(), "llm_http_error");
    assert_eq!(
        e.to_string(),
        format!(
            "the LLM endpoint {}/chat/completions answered HTTP 500 (3 tries): the model crashed",
            llm.base_url()
        )
    );
    assert_eq!(llm.received().len(), 3);
    // A 4xx is not retried.
    llm.push(Reply::raw(404, r#"{"error": "model 'x' not found"}"#));
    let e = client.complete(&ask("hi")).await.unwrap_err();
    assert!(
        e.to_string()
            .ends_with("answered HTTP 404 (1 tries): model 'x' not found"),
        "{e}"
    );
    llm.stop().await;
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_clear_error() {
    let base = closed_port().await;
    let mut cfg = config(&base);
    cfg.max_retries = 1;
    let client = Client::new(cfg).unwrap();
    let e = client.complete(&ask("hi")).await.unwrap_err();
    assert_eq!(e.code(), "llm_unreachable");
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "cannot reach the LLM endpoint {base}/chat/completions (2 tries): "
        )),
        "{msg}"
    );
}

#[tokio::test]
async fn a_slow_answer_times_out() {
    let llm = ScriptedLlm::start().await;
    llm.push(Reply::content("late").delay(Duration::from_secs(3)));
    let mut cfg = config(&llm.base_url());
    cfg.timeout = Duration::from_millis(200);
    let client = Client::new(cfg).unwrap();
    let e = client.complete(&ask("hi")).await.unwrap_err();
    assert_eq!(e.code(), "llm_timeout");
    assert_eq!(llm.received().len(), 1, "timeouts are not retried");
    llm.stop().await;
}

#[tokio::test]
async fn nonsense_answers_are_bad_responses() {
    let llm = ScriptedLlm::start().await;
    let client = Client::new(config(&llm.base_url())).unwrap();
    let cases = [
        (Reply::raw(200, "<html>hello</html>"), "not JSON"),
        (Reply::raw(200, r#"{"choices": []}"#), "no `choices`"),
        (
            Reply::raw(200, r#"{"error": {"message": "boom"}}"#),
            "an error object",
        ),
        (Reply::content("   "), "an empty answer"),
    ];
    for (reply, expect) in cases {
        llm.push(reply);
        let e = client.complete(&ask("hi")).await.unwrap_err();
        assert_eq!(e.code(), "llm_bad_response", "{e}");
        assert!(
            e.to_string().contains(expect),
            "{e} should contain {expect}"
        );
    }
    llm.stop().await;
}

#[tokio::test]
async fn response_format_falls_back_to_instructions_once_refused() {
    let llm = ScriptedLlm::start().await;
    llm.push(Reply::status(
        400,
        "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model.",
    ));
    llm.push(Reply::content("{}"));
    llm.push(Reply::content("{}"));
    let client = Client::new(config(&llm.base_url())).unwrap();
    let c = client.complete(&with_schema("hi")).await.unwrap();
    assert!(!c.used_response_format);
    client.complete(&with_schema("again")).await.unwrap();
    let got = llm.received();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].body["response_format"]["type"], "json_schema");
    assert_eq!(
        got[0].body["response_format"]["json_schema"]["name"],
        "answer"
    );
    assert_eq!(got[0].body["messages"][0]["content"], "be brief");
    for later in &got[1..] {
        assert!(
            later.body.get("response_format").is_none(),
            "{:?}",
            later.body
        );
        let system = later.body["messages"][0]["content"].as_str().unwrap();
        assert!(
            system.starts_with("be brief\n\nAnswer with one JSON object and nothing else")
                && system.ends_with("JSON Schema:\n{\"type\":\"object\"}"),
            "{system}"
        );
    }
    llm.stop().await;
}

#[tokio::test]
async fn json_schema_mode_never_falls_back_and_prompt_mode_never_sends_it() {
    let llm = ScriptedLlm::start().await;
    llm.push(Reply::status(400, "unknown field response_format"));
    let mut cfg = config(&llm.base_url());
    cfg.response_format = ResponseFormat::JsonSchema;
    let client = Client::new(cfg).unwrap();
    let e = client.complete(&with_schema("hi")).await.unwrap_err();
    assert_eq!(e.code(), "llm_http_error");

    llm.push(Reply::content("{}"));
    let mut cfg = config(&llm.base_url());
    cfg.response_format = ResponseFormat::Prompt;
    let client = Client::new(cfg).unwrap();
    client.complete(&with_schema("hi")).await.unwrap();
    let got = llm.received();
    assert_eq!(got.len(), 2);
    assert!(got[1].body.get("response_format").is_none());
    llm.stop().await;
}

#[tokio::test]
async fn tool_calls_are_read() {
    let llm = ScriptedLlm::start().await;
    llm.push(Reply::tool_calls(&[("shell", json!({"command": "ls"}))]));
    let client = Client::new(config(&llm.base_url())).unwrap();
    let mut req = ask("list files");
    req.tools = vec![json!({"type": "function", "function": {"name": "shell",
        "parameters": {"type": "object"}}})];
    let c = client.complete(&req).await.unwrap();
    assert_eq!(c.text(), "");
    assert_eq!(
        c.message.tool_calls,
        vec![ToolCall {
            id: "call_1".into(),
            kind: "function".into(),
            function: FunctionCall {
                name: "shell".into(),
                arguments: r#"{"command":"ls"}"#.into()
            }
        }]
    );
    assert_eq!(
        llm.received()[0].body["tools"][0]["function"]["name"],
        "shell"
    );
    // A tool result goes back as a `tool` message.
    let m = serde_json::to_value(Message::tool("call_1", "a.txt")).unwrap();
    assert_eq!(
        m,
        json!({"role": "tool", "content": "a.txt", "tool_call_id": "call_1"})
    );
    llm.stop().await;
}

#[tokio::test]
async fn record_then_replay_without_network() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("llm.jsonl");
    let llm = ScriptedLlm::start().await;
    llm.push(Reply::status(429, "busy").header("retry-after", "0"));
    llm.push(Reply::content("recorded answer"));
    let mut cfg = config(&llm.base_url());
    cfg.cassette = CassetteMode::Record(path.clone());
    let client = Client::new(cfg).unwrap();
    assert_eq!(
        client.complete(&ask("hi")).await.unwrap().text(),
        "recorded answer"
    );
    llm.stop().await;
    let saved = std::fs::read_to_string(&path).unwrap();
    assert_eq!(saved.lines().count(), 1, "the 429 is not recorded: {saved}");
    assert!(!saved.contains("sk-secret-123"));

    let mut cfg = config("not a url at all");
    cfg.cassette = CassetteMode::Replay(path.clone());
    let client = Client::new(cfg).unwrap();
    let c = client.complete(&ask("hi")).await.unwrap();
    assert_eq!((c.text(), c.replayed), ("recorded answer", true));
    let e = client.complete(&ask("something else")).await.unwrap_err();
    assert_eq!(e.code(), "llm_cassette_miss");
}

#[test]
fn bad_configuration_is_refused() {
    let e = Client::new(ClientConfig::new("http://localhost:11434/v1", " ")).unwrap_err();
    assert_eq!(
        (e.code(), e.to_string().as_str()),
        ("llm_config", "LLM configuration: no model is set")
    );
    let e = Client::new(ClientConfig::new("localhost:11434", "m")).unwrap_err();
    assert_eq!(e.code(), "llm_config");
    assert!(
        e.to_string().contains("not an http:// or https:// URL"),
        "{e}"
    );
    let secret = Secret::new("sk-abc");
    assert_eq!(format!("{secret:?}"), "Secret([redacted])");
    let mut cfg = ClientConfig::new("http://user:pw@localhost:1/v1", "m");
    cfg.api_key = Some(secret);
    assert!(!format!("{cfg:?}").contains("sk-abc"));
    let client = Client::new(cfg).unwrap();
    assert_eq!(client.shown, "http://localhost:1/v1/chat/completions");
}
