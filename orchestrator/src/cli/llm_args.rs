//! `weft serve` flags that choose and configure the planner.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use weft_planner::llm::{CassetteMode, ResponseFormat, Secret};

use crate::config::{LlmOptions, PlannerChoice};

/// Which planner turns requests into graphs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlannerKind {
    /// Offline and deterministic: imperative English (docs/rules-planner.md).
    Rules,
    /// An OpenAI-compatible chat-completions endpoint (OpenAI, Azure OpenAI, Ollama, vLLM,
    /// llama.cpp); it also revises graphs after results.
    Llm,
}

/// How the JSON Schema of the answer is sent to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ResponseFormatArg {
    /// `response_format: json_schema`, falling back to instructions if the server refuses it.
    Auto,
    /// Always `response_format: json_schema`.
    JsonSchema,
    /// Only instructions in the prompt.
    Prompt,
}

/// The planner flags. The API key is read from `--llm-api-key-file` or the environment
/// variable `WEFT_LLM_API_KEY` (never a flag, so it does not show in `ps`).
#[derive(Debug, Clone, clap::Args)]
pub struct LlmArgs {
    /// The planner: `rules` (offline, the default) or `llm`.
    #[arg(long, env = "WEFT_PLANNER", value_enum, default_value_t = PlannerKind::Rules)]
    pub planner: PlannerKind,
    /// The LLM API root, e.g. `http://localhost:11434/v1` (Ollama) or
    /// `https://api.openai.com/v1`.
    #[arg(long, env = "WEFT_LLM_BASE_URL")]
    pub llm_base_url: Option<String>,
    /// The model name sent with every call.
    #[arg(long, env = "WEFT_LLM_MODEL")]
    pub llm_model: Option<String>,
    /// A file holding the API key (else `WEFT_LLM_API_KEY`; none for local servers).
    #[arg(long, env = "WEFT_LLM_API_KEY_FILE")]
    pub llm_api_key_file: Option<PathBuf>,
    /// Longest one LLM call may take, in seconds.
    #[arg(long, env = "WEFT_LLM_TIMEOUT_SECS", default_value_t = 120)]
    pub llm_timeout_secs: u64,
    /// Retries of an LLM call after a connection failure, a 429 or a 5xx.
    #[arg(long, env = "WEFT_LLM_MAX_RETRIES", default_value_t = 3)]
    pub llm_max_retries: u32,
    /// How the answer's JSON Schema is sent.
    #[arg(long, env = "WEFT_LLM_RESPONSE_FORMAT", value_enum, default_value_t = ResponseFormatArg::Auto)]
    pub llm_response_format: ResponseFormatArg,
    /// Times a refused plan goes back to the model with its errors before the request is
    /// refused (`plan_invalid`).
    #[arg(long, env = "WEFT_LLM_REPAIR_ROUNDS", default_value_t = 2)]
    pub llm_repair_rounds: u32,
    /// Revisions of a request's graph after results (0: never revise).
    #[arg(long, env = "WEFT_LLM_REVISE_ROUNDS", default_value_t = 3)]
    pub llm_revise_rounds: u32,
    /// Bytes of each task's output shown to the model when revising.
    #[arg(long, env = "WEFT_LLM_OUTPUT_BYTES", default_value_t = 2000)]
    pub llm_output_bytes: usize,
    /// Record LLM exchanges to this file (JSON Lines), for `--llm-replay`: calls it already
    /// holds are answered from it, every other exchange is appended.
    #[arg(long, env = "WEFT_LLM_RECORD", conflicts_with = "llm_replay")]
    pub llm_record: Option<PathBuf>,
    /// Answer LLM calls only from this recording, with no network; a call it does not hold
    /// fails (`llm_cassette_miss`).
    #[arg(long, env = "WEFT_LLM_REPLAY")]
    pub llm_replay: Option<PathBuf>,
}

impl LlmArgs {
    /// The planner these flags choose, checked: `--planner llm` needs a model, and a base URL
    /// unless it replays.
    pub fn choice(&self) -> anyhow::Result<PlannerChoice> {
        if self.planner == PlannerKind::Rules {
            return Ok(PlannerChoice::Rules);
        }
        let Some(model) = self
            .llm_model
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
        else {
            bail!("--planner llm needs a model: --llm-model or WEFT_LLM_MODEL");
        };
        let base_url = match (&self.llm_base_url, &self.llm_replay) {
            (Some(u), _) => u.trim().to_owned(),
            (None, Some(_)) => String::new(),
            (None, None) => bail!(
                "--planner llm needs the API root: --llm-base-url or WEFT_LLM_BASE_URL \
                 (e.g. http://localhost:11434/v1)"
            ),
        };
        if self.llm_timeout_secs == 0 {
            bail!("--llm-timeout-secs must be at least 1");
        }
        let mut o = LlmOptions::new(base_url, model);
        let c = &mut o.planner.client;
        c.api_key = self.api_key()?;
        c.timeout = Duration::from_secs(self.llm_timeout_secs);
        c.max_retries = self.llm_max_retries;
        c.response_format = match self.llm_response_format {
            ResponseFormatArg::Auto => ResponseFormat::Auto,
            ResponseFormatArg::JsonSchema => ResponseFormat::JsonSchema,
            ResponseFormatArg::Prompt => ResponseFormat::Prompt,
        };
        c.cassette = match (&self.llm_record, &self.llm_replay) {
            (Some(p), _) => CassetteMode::Record(p.clone()),
            (None, Some(p)) => CassetteMode::Replay(p.clone()),
            (None, None) => CassetteMode::Off,
        };
        o.planner.repair_rounds = self.llm_repair_rounds;
        o.planner.output_limit = self.llm_output_bytes.max(100);
        o.revise_rounds = self.llm_revise_rounds;
        // Checks the URL now, before anything listens (a cassette is opened when the server
        // starts; replaying needs no URL).
        if self.llm_replay.is_none() {
            weft_planner::llm::Client::new(weft_planner::llm::ClientConfig {
                cassette: CassetteMode::Off,
                ..o.planner.client.clone()
            })?;
        }
        Ok(PlannerChoice::Llm(Box::new(o)))
    }

    fn api_key(&self) -> anyhow::Result<Option<Secret>> {
        let key = match &self.llm_api_key_file {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the LLM API key file {}", path.display()))?,
            None => std::env::var("WEFT_LLM_API_KEY").unwrap_or_default(),
        };
        let key = key.trim();
        Ok((!key.is_empty()).then(|| Secret::new(key)))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Cmd};
    use crate::config::PlannerChoice;

    fn serve(args: &[&str]) -> anyhow::Result<crate::ServeOptions> {
        let mut argv = vec!["weft", "serve"];
        argv.extend_from_slice(args);
        let Cmd::Serve(s) = Cli::try_parse_from(argv)?.cmd else {
            panic!("serve");
        };
        s.options()
    }

    #[test]
    fn rules_is_the_default() {
        let o = serve(&[]).unwrap();
        assert!(matches!(o.planner, PlannerChoice::Rules));
    }

    #[test]
    fn llm_flags() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "sk-from-file\n").unwrap();
        let o = serve(&[
            "--planner",
            "llm",
            "--llm-base-url",
            "http://localhost:11434/v1",
            "--llm-model",
            "llama3.1",
            "--llm-api-key-file",
            key.to_str().unwrap(),
            "--llm-response-format",
            "prompt",
            "--llm-revise-rounds",
            "5",
            "--llm-record",
            "/tmp/x.jsonl",
        ])
        .unwrap();
        let PlannerChoice::Llm(llm) = &o.planner else {
            panic!("llm");
        };
        let c = &llm.planner.client;
        assert_eq!(c.model, "llama3.1");
        assert_eq!(c.api_key.as_ref().unwrap().expose(), "sk-from-file");
        assert_eq!(c.response_format, weft_planner::llm::ResponseFormat::Prompt);
        assert_eq!(llm.revise_rounds, 5);
        assert_eq!(llm.planner.repair_rounds, 2);
        assert!(!format!("{o:?}").contains("sk-from-file"));
    }

    #[test]
    fn llm_needs_a_model_and_a_url() {
        let e = serve(&["--planner", "llm", "--llm-base-url", "http://x/v1"]).unwrap_err();
        assert!(e.to_string().contains("needs a model"), "{e}");
        let e = serve(&["--planner", "llm", "--llm-model", "m"]).unwrap_err();
        assert!(e.to_string().contains("--llm-base-url"), "{e}");
        let e = serve(&[
            "--planner",
            "llm",
            "--llm-model",
            "m",
            "--llm-base-url",
            "localhost:11434",
        ])
        .unwrap_err();
        assert!(
            e.to_string().contains("not an http:// or https:// URL"),
            "{e}"
        );
        // Replaying needs no URL.
        serve(&[
            "--planner",
            "llm",
            "--llm-model",
            "m",
            "--llm-replay",
            "/tmp/c.jsonl",
        ])
        .unwrap();
        assert!(
            serve(&["--llm-record", "/tmp/a", "--llm-replay", "/tmp/b"]).is_err(),
            "record and replay conflict"
        );
    }
}
