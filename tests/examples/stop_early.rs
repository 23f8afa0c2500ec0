//! Stop a stream from the callback once you have what you need, and read the call's
//! timings: connect, first byte, first and last token.
//!
//! `cargo run --example stop_early --features mock` runs against the crate's mock server.

use oai_sse::mock::{MockServer, Script};
use oai_sse::{ChatRequest, Client, Message, StreamEvent};
use std::ops::ControlFlow;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server =
        MockServer::start(Script::new().text("alpha beta gamma delta epsilon zeta eta theta"))?;
    let client = Client::new(&server.base_url())?;
    let request = ChatRequest::new("mock-model", vec![Message::user("Greek letters, please")]);

    // Only the first three words are needed: break, and the call ends at once.
    let mut words = Vec::new();
    let response = client.chat_stream(&request, |event| {
        if let StreamEvent::Content { text, .. } = event {
            words.push(text.trim().to_owned());
            if words.len() == 3 {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    })?;
    println!("{}", words.join(" "));
    assert!(response.stopped_by_caller);
    eprintln!("stopped by the caller after {:?}", response.content());

    // A complete call, timed.
    let response = client.chat(&request)?;
    for attempt in &response.timings.attempts {
        eprintln!(
            "attempt {}: connect {:?} (none: a pooled connection), first byte {:?}, first token {:?}, last token {:?}, total {:?}, {} bytes",
            attempt.attempt,
            attempt.connect,
            attempt.first_byte,
            attempt.first_token,
            attempt.last_token,
            attempt.total,
            attempt.bytes
        );
    }
    Ok(())
}
