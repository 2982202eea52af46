//! The control connection's TLS stream, for suppaftp. A write into a
//! tokio-rustls stream can end with the record still in rustls' buffer:
//! when the socket's write is `Pending` (not writable, or the task's tokio
//! budget spent, as after a long download in the same task), tokio-rustls
//! returns the bytes as written, and only a flush sends them. suppaftp
//! writes a command and then reads its reply without flushing, so such a
//! command never left and its reply never came: vsftpd never received an
//! `EPSV` after a TLS download, about once in 100 runs under load (the
//! upload in `explicit_ftps_on_vsftpd_verifies_the_ca_and_reuses_tls_sessions`;
//! none in 240 runs since). Here every read first flushes what was written.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use suppaftp::tokio::{AsyncTlsConnector, TokioTlsStream};
use suppaftp::tokio_rustls::TlsConnector;
use suppaftp::tokio_rustls::client::TlsStream;
use suppaftp::{FtpError, FtpResult};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Makes [`CtrlTls`] streams with ferry's TLS configuration.
pub struct CtrlConnector(pub TlsConnector);

impl std::fmt::Debug for CtrlConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CtrlConnector")
    }
}

#[async_trait::async_trait]
impl AsyncTlsConnector for CtrlConnector {
    type Stream = CtrlTls;

    async fn connect(&self, domain: &str, stream: TcpStream) -> FtpResult<CtrlTls> {
        let name = rustls::pki_types::ServerName::try_from(domain.to_string())
            .map_err(|e| FtpError::SecureError(e.to_string()))?;
        self.0
            .connect(name, stream)
            .await
            .map(CtrlTls)
            .map_err(|e| FtpError::SecureError(e.to_string()))
    }
}

/// A TLS control connection whose reads flush first.
#[derive(Debug)]
pub struct CtrlTls(TlsStream<TcpStream>);

impl AsyncRead for CtrlTls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        ready!(Pin::new(&mut self.0).poll_flush(cx))?;
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for CtrlTls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl TokioTlsStream for CtrlTls {
    type InnerStream = TlsStream<TcpStream>;

    fn tcp_stream(self) -> FtpResult<TcpStream> {
        Ok(self.0.into_inner().0)
    }

    fn get_ref(&self) -> &TcpStream {
        self.0.get_ref().0
    }

    fn mut_ref(&mut self) -> &mut Self::InnerStream {
        &mut self.0
    }
}
