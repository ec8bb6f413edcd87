//! `consume --group NAME` without `--exec`: the events go to standard output, and each is
//! acknowledged once it is written there.
//!
//! The writes go through a thread of their own, because a write to standard output may block
//! for as long as the reader likes (a pipe into `less`, a slow consumer process). Blocked in
//! the write, the member would send nothing, and every event it holds (the ones being
//! written, and those the server delivered behind them) would reach the group's ack time-out
//! and go to another member while this one is still writing them (session 18). So the main
//! thread hands each chunk of output to the writer and, while the write has not finished,
//! sends GroupProgress for every held event once per progress interval, as `--exec` does
//! while its command runs.

use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};

use flo::client::GroupConsumer;

/// Output gathered before it is handed to the writer: a pipe's buffer is 64 KiB on Linux.
const CHUNK_SIZE_MAX: usize = 64 * 1024;

/// Standard output, written by a thread of its own (see the module documentation).
pub struct HeldOutput {
    /// Output not yet handed to the writer.
    chunk: Vec<u8>,
    chunks: SyncSender<Vec<u8>>,
    /// The writer's answer for each chunk: its buffer back (emptied), or the write's error.
    written: Receiver<io::Result<Vec<u8>>>,
}

impl HeldOutput {
    /// Starts the writer thread. It lives as long as the process: a write that never ends
    /// (a reader that never reads) must not keep the process from exiting.
    pub fn start() -> Result<HeldOutput, String> {
        let (chunks, to_write) = mpsc::sync_channel::<Vec<u8>>(1);
        let (done, written) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("stdout".into())
            .spawn(move || {
                for mut chunk in to_write {
                    let mut out = io::stdout().lock();
                    let result = out.write_all(&chunk).and_then(|()| out.flush());
                    chunk.clear();
                    if done.send(result.map(|()| chunk)).is_err() {
                        break;
                    }
                }
            })
            .map_err(|error| {
                format!("could not start the thread writing standard output: {error}")
            })?;
        Ok(HeldOutput {
            chunk: Vec::with_capacity(CHUNK_SIZE_MAX),
            chunks,
            written,
        })
    }

    /// Adds `text` to the output; writes it out once a chunk is full. True when the reader
    /// went away (`consume | head`), which ends the consumer successfully.
    pub fn push(&mut self, text: &str, consumer: &mut GroupConsumer<'_>) -> Result<bool, String> {
        self.chunk.extend_from_slice(text.as_bytes());
        match self.chunk.len() >= CHUNK_SIZE_MAX {
            true => self.flush(consumer),
            false => Ok(false),
        }
    }

    /// Writes out everything added so far and waits until it is written, keeping the
    /// member's held events from their ack time-out meanwhile. True when the reader went
    /// away.
    pub fn flush(&mut self, consumer: &mut GroupConsumer<'_>) -> Result<bool, String> {
        if self.chunk.is_empty() {
            return Ok(false);
        }
        let chunk = std::mem::take(&mut self.chunk);
        let stopped = || "the thread writing standard output stopped".to_string();
        self.chunks.send(chunk).map_err(|_| stopped())?;
        let interval = consumer.progress_interval();
        loop {
            match self.written.recv_timeout(interval) {
                Ok(Ok(buffer)) => {
                    self.chunk = buffer;
                    return Ok(false);
                }
                Ok(Err(error)) => return super::stopped_reader(error).map(|()| true),
                Err(RecvTimeoutError::Timeout) => consumer
                    .progress_held()
                    .map_err(|error| format!("while standard output was blocked: {error}"))?,
                Err(RecvTimeoutError::Disconnected) => return Err(stopped()),
            }
        }
    }
}
