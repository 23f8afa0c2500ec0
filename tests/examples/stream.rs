//! Stream a chat reply event by event, surviving a cut connection.
//!
//! `cargo run --example stream --features mock` runs against the crate's mock server, which cuts the first
//! response mid-stream and replays it like llama.cpp does; set `OPENAI_BASE_URL` (and
//! `OPENAI_MODEL`, `OPENAI_API_KEY` if needed) to use a real server instead.

use oai_sse::mock::{MockServer, Script};
use oai_sse::{ChatRequest, Client, Message, RetryAction, StreamEvent};
use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (_mock, base_url) = match std::env::var("OPENAI_BASE_URL") {
        Ok(url) => (None, url),
        Err(_) => {
            let script = Script::new()
                .text("Streams break; this one picks up where it broke and repeats nothing.")
                .fault("close-after=600,times=1".parse::<oai_sse::mock::FaultRule>()?);
            let mock = MockServer::start(script)?;
            let url = mock.base_url();
            (Some(mock), url)
        }
    };
    let mut builder = Client::builder().base_url(base_url);
    if let Ok(key) = std::env::var("OPENAI_API_KEY") {
        builder = builder.api_key(key);
    }
    let client = builder.build()?;
    let model = std::env::var("OPENAI_MODEL").unwrap_or_default();
    let request = ChatRequest::new(model, vec![Message::user("Tell me about broken streams.")])
        .max_tokens(200);

    let mut stream = client.stream(&request)?;
    let mut out = std::io::stdout().lock();
    while let Some(event) = stream.next_event()? {
        match event {
            StreamEvent::Content { text, .. } => {
                out.write_all(text.as_bytes())?;
                out.flush()?;
            }
            StreamEvent::Resumed { offset, .. } => eprint!(" [resumed at byte {offset}] "),
            StreamEvent::Restart { .. } => eprintln!("\n[restarting: the server could not resume]"),
            _ => {}
        }
    }
    let response = stream.finish()?;
    writeln!(out)?;
    for retry in &response.retries {
        let how = match retry.action {
            RetryAction::Resumed { offset } => format!("resumed at byte {offset}"),
            _ => "restarted".to_owned(),
        };
        eprintln!("attempt {} failed ({}); {how}", retry.attempt, retry.reason);
    }
    if let Some(usage) = &response.usage {
        eprintln!(
            "{} prompt + {} completion tokens",
            usage.prompt_tokens, usage.completion_tokens
        );
    }
    Ok(())
}
