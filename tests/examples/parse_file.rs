//! The SSE parser on its own: read an event stream from a file (or stdin with `-`) and
//! print each event. Allocates nothing per event once its buffers have grown.
//!
//! `cargo run --example parse_file -- capture.sse`; without an argument it parses a small
//! built-in sample.

use oai_sse::sse::{EventReader, Item};
use std::io::{BufRead, BufReader};

const SAMPLE: &str = ": keep-alive\n\nid: 1\nevent: greeting\ndata: hello\n\nid: 2\ndata: multi\ndata: line\n\nretry: 3000\n\ndata: [DONE]\n\n";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let source: Box<dyn BufRead> = match std::env::args().nth(1).as_deref() {
        None => Box::new(SAMPLE.as_bytes()),
        Some("-") => Box::new(BufReader::new(std::io::stdin())),
        Some(path) => Box::new(BufReader::new(std::fs::File::open(path)?)),
    };
    let mut reader = EventReader::new(source);
    let mut events = 0;
    while let Some(item) = reader.next_item()? {
        match item {
            Item::Event(event) => {
                events += 1;
                println!(
                    "event {:?} id {:?}: {:?}",
                    event.event, event.id, event.data
                );
            }
            Item::Comment(text) => println!("comment {text:?}"),
            Item::Retry(ms) => println!("retry {ms} ms"),
        }
    }
    eprintln!("{events} events");
    Ok(())
}
