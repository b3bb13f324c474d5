//! Writing replies while still reading requests.
//!
//! A client may write its whole pipeline before reading any reply. If the
//! connection only wrote while its replies filled the socket buffers, it
//! would stop reading, the client's writes would block on the full receive
//! buffer, and both would wait for ever. So while a write waits for the
//! socket, the connection keeps reading into its input buffer (up to the
//! query buffer limit), as Redis keeps reading while its output is queued.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;

use keel_reactor::net::TcpStream;

use crate::input::InputBuffer;

enum Ready {
    Written(std::io::Result<()>),
    Read(std::io::Result<usize>),
}

/// Writes all of `bytes`, reading into `input` meanwhile while it holds at
/// most `input_bytes_max` pending bytes and the peer has not ended its side.
pub(crate) async fn write_all_reading(
    stream: &TcpStream,
    bytes: &[u8],
    input: &mut InputBuffer,
    input_bytes_max: usize,
) -> std::io::Result<()> {
    let mut write = pin!(stream.write_all(bytes));
    let mut peer_ended = false;
    loop {
        if peer_ended || input.pending_len() >= input_bytes_max {
            return write.await;
        }
        let ready = {
            // Dropping a pending read loses nothing: readiness reads run
            // their system call only when polled.
            let mut read = pin!(stream.read(input.spare()));
            std::future::poll_fn(|cx| {
                if let Poll::Ready(r) = write.as_mut().poll(cx) {
                    return Poll::Ready(Ready::Written(r));
                }
                if let Poll::Ready(r) = read.as_mut().poll(cx) {
                    return Poll::Ready(Ready::Read(r));
                }
                Poll::Pending
            })
            .await
        };
        match ready {
            Ready::Written(result) => return result,
            Ready::Read(Ok(0)) => peer_ended = true,
            Ready::Read(Ok(n)) => input.filled(n),
            // The write will report the failure, or the next read will.
            Ready::Read(Err(_)) => peer_ended = true,
        }
    }
}
