using System.Buffers.Binary;
using System.Net.Security;
using System.Security.Authentication;
using System.Text;
using UblkCsi.Stores.Rpc;

namespace UblkCsi.Stores.Nbd;

/// <summary>
/// The client side of the negotiation phase: fixed newstyle, NBD_OPT_STRUCTURED_REPLY, then
/// NBD_OPT_GO naming the export and asking for NBD_INFO_BLOCK_SIZE (falling back to
/// NBD_OPT_EXPORT_NAME for servers that do not know NBD_OPT_GO). With TLS, NBD_OPT_STARTTLS comes
/// first and everything after it (the rest of the negotiation and the transmission phase) runs over
/// the TLS stream; a server that refuses STARTTLS is an error, never a fallback to cleartext. Every length the server sends is
/// bounded before anything is read or allocated, and the caller's token bounds the whole exchange,
/// so a silent or babbling server ends in an exception, never a hang.
/// </summary>
internal static class NbdHandshake
{
    /// <summary>
    /// Negotiates <paramref name="exportName"/> on a freshly connected stream and returns the stream of
    /// the transmission phase: <paramref name="stream"/> itself, or the TLS stream over it when
    /// <paramref name="tls"/> is set (the caller then owns and disposes the returned stream).
    /// </summary>
    /// <param name="exportLabel">How messages and the result name the export (the name itself may be a credential).</param>
    /// <param name="tlsHost">The name the server's certificate must carry (SNI and name check).</param>
    /// <exception cref="NbdProtocolException">The server does not speak the protocol as documented.</exception>
    /// <exception cref="NbdRefusedException">The server refused the export, an option we need, STARTTLS, or failed certificate verification.</exception>
    public static async Task<(Stream Stream, NbdExport Export)> NegotiateAsync(
        Stream stream, string exportName, string exportLabel, string server, RpcTls? tls, string tlsHost, CancellationToken cancellationToken)
    {
        var buffer = new byte[NbdProtocol.MaxControlPayload];
        await ReadExactAsync(stream, buffer.AsMemory(0, 18), server, "the server greeting", cancellationToken).ConfigureAwait(false);
        var magic = BinaryPrimitives.ReadUInt64BigEndian(buffer);
        if (magic != NbdProtocol.InitMagic)
        {
            throw new NbdProtocolException($"{server} is not an NBD server: greeting starts with 0x{magic:x16}, expected 'NBDMAGIC'");
        }

        var style = BinaryPrimitives.ReadUInt64BigEndian(buffer.AsSpan(8));
        if (style == NbdProtocol.OldstyleMagic)
        {
            throw new NbdProtocolException($"{server} uses the oldstyle negotiation, which has no export names; run it in newstyle mode (nbd-server 3.10+, nbdkit and qemu-nbd default)");
        }

        if (style != NbdProtocol.OptionMagic)
        {
            throw new NbdProtocolException($"{server} sent 0x{style:x16} after NBDMAGIC, expected 'IHAVEOPT'");
        }

        var handshake = (NbdHandshakeFlags)BinaryPrimitives.ReadUInt16BigEndian(buffer.AsSpan(16));
        var fixedNewstyle = (handshake & NbdHandshakeFlags.FixedNewstyle) != 0;
        var noZeroes = (handshake & NbdHandshakeFlags.NoZeroes) != 0;
        var clientFlags = (fixedNewstyle ? NbdClientFlags.FixedNewstyle : 0) | (noZeroes ? NbdClientFlags.NoZeroes : 0);
        BinaryPrimitives.WriteUInt32BigEndian(buffer, (uint)clientFlags);
        await stream.WriteAsync(buffer.AsMemory(0, 4), cancellationToken).ConfigureAwait(false);

        var nameBytes = Encoding.UTF8.GetBytes(exportName);
        // From here on the name only appears in messages and the result: the label stands for it.
        exportName = exportLabel;
        if (tls is not null)
        {
            if (!fixedNewstyle)
            {
                throw new NbdRefusedException(StoreErrorCode.FailedPrecondition,
                    $"{server} does not speak the fixed newstyle negotiation, so it cannot offer TLS (NBD_OPT_STARTTLS); tls is on, and the client never falls back to cleartext");
            }

            stream = await StartTlsAsync(stream, buffer, tls, tlsHost, server, cancellationToken).ConfigureAwait(false);
        }

        try
        {
            if (!fixedNewstyle)
            {
                // Plain newstyle knows only NBD_OPT_EXPORT_NAME.
                return (stream, await ExportNameAsync(stream, buffer, nameBytes, exportName, noZeroes, structured: false, server, cancellationToken).ConfigureAwait(false));
            }

            var structured = await StructuredRepliesAsync(stream, buffer, server, cancellationToken).ConfigureAwait(false);
            var export = await GoAsync(stream, buffer, nameBytes, exportName, structured, server, cancellationToken).ConfigureAwait(false);
            return (stream, export ?? await ExportNameAsync(stream, buffer, nameBytes, exportName, noZeroes, structured, server, cancellationToken).ConfigureAwait(false));
        }
        catch when (tls is not null)
        {
            // The TLS stream is ours until it is returned.
            await stream.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>NBD_OPT_STARTTLS, then the TLS handshake with the server's certificate checked against the configured CA.</summary>
    private static async Task<Stream> StartTlsAsync(Stream stream, byte[] buffer, RpcTls tls, string tlsHost, string server, CancellationToken cancellationToken)
    {
        await SendOptionAsync(stream, buffer, NbdOption.StartTls, ReadOnlyMemory<byte>.Empty, cancellationToken).ConfigureAwait(false);
        var (reply, length) = await ReadOptionReplyAsync(stream, buffer, NbdOption.StartTls, server, cancellationToken).ConfigureAwait(false);
        if (reply != NbdOptionReply.Ack)
        {
            var said = length == 0 ? "" : $" (server said: {Printable(buffer.AsSpan(0, length))})";
            throw ((uint)reply & (uint)NbdOptionReply.ErrorBit) != 0
                ? new NbdRefusedException(StoreErrorCode.FailedPrecondition,
                    $"{server} refused NBD_OPT_STARTTLS with error {(uint)reply & ~(uint)NbdOptionReply.ErrorBit}{said}: it does not offer TLS; tls is on, and the client never falls back to cleartext")
                : new NbdProtocolException($"{server} answered NBD_OPT_STARTTLS with reply type {(uint)reply}");
        }

        if (length != 0)
        {
            throw new NbdProtocolException($"{server} acknowledged NBD_OPT_STARTTLS with {length} bytes of data, expected none");
        }

        var check = new ServerCertificateCheck(tls, tlsHost);
        var secure = new SslStream(stream, leaveInnerStreamOpen: false);
        try
        {
            await secure.AuthenticateAsClientAsync(check.ClientOptions(), cancellationToken).ConfigureAwait(false);
            return secure;
        }
        catch (AuthenticationException e)
        {
            await secure.DisposeAsync().ConfigureAwait(false);
            throw new NbdRefusedException(StoreErrorCode.FailedPrecondition, $"TLS handshake with {server} failed: {check.LastProblem ?? e.Message}");
        }
        catch
        {
            await secure.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private static async Task<bool> StructuredRepliesAsync(Stream stream, byte[] buffer, string server, CancellationToken cancellationToken)
    {
        await SendOptionAsync(stream, buffer, NbdOption.StructuredReply, ReadOnlyMemory<byte>.Empty, cancellationToken).ConfigureAwait(false);
        var (reply, length) = await ReadOptionReplyAsync(stream, buffer, NbdOption.StructuredReply, server, cancellationToken).ConfigureAwait(false);
        return reply switch
        {
            NbdOptionReply.Ack when length == 0 => true,
            NbdOptionReply.Ack => throw new NbdProtocolException($"{server} acknowledged NBD_OPT_STRUCTURED_REPLY with {length} bytes of data, expected none"),
            NbdOptionReply.ErrTlsRequired => throw TlsRequired(server),
            _ when ((uint)reply & (uint)NbdOptionReply.ErrorBit) != 0 => false, // simple replies then
            _ => throw new NbdProtocolException($"{server} answered NBD_OPT_STRUCTURED_REPLY with reply type {(uint)reply}"),
        };
    }

    /// <summary>NBD_OPT_GO; null when the server does not know the option (the caller falls back).</summary>
    private static async Task<NbdExport?> GoAsync(Stream stream, byte[] buffer, byte[] nameBytes, string exportName, bool structured, string server, CancellationToken cancellationToken)
    {
        // Data: name length, name, number of information requests, the requests.
        var data = new byte[4 + nameBytes.Length + 2 + 2];
        BinaryPrimitives.WriteUInt32BigEndian(data, (uint)nameBytes.Length);
        nameBytes.CopyTo(data, 4);
        BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(4 + nameBytes.Length), 1);
        BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(6 + nameBytes.Length), (ushort)NbdInfo.BlockSize);
        await SendOptionAsync(stream, buffer, NbdOption.Go, data, cancellationToken).ConfigureAwait(false);

        long? size = null;
        var flags = NbdTransmissionFlags.None;
        // Without NBD_INFO_BLOCK_SIZE the protocol's defaults apply: any alignment, 32 MiB payloads.
        int minimum = 1, preferred = 4096, maximum = NbdProtocol.DefaultMaxBlockSize;
        while (true)
        {
            var (reply, length) = await ReadOptionReplyAsync(stream, buffer, NbdOption.Go, server, cancellationToken).ConfigureAwait(false);
            switch (reply)
            {
                case NbdOptionReply.Info:
                    if (length < 2)
                    {
                        throw new NbdProtocolException($"{server} sent an NBD_REP_INFO of {length} bytes");
                    }

                    var info = (NbdInfo)BinaryPrimitives.ReadUInt16BigEndian(buffer);
                    if (info == NbdInfo.Export)
                    {
                        RequireLength(length, 12, "NBD_INFO_EXPORT", server);
                        var rawSize = BinaryPrimitives.ReadUInt64BigEndian(buffer.AsSpan(2));
                        size = rawSize > long.MaxValue ? throw new NbdProtocolException($"{server} reported an export size of {rawSize} bytes") : (long)rawSize;
                        flags = (NbdTransmissionFlags)BinaryPrimitives.ReadUInt16BigEndian(buffer.AsSpan(10));
                    }
                    else if (info == NbdInfo.BlockSize)
                    {
                        RequireLength(length, 14, "NBD_INFO_BLOCK_SIZE", server);
                        minimum = ToInt(BinaryPrimitives.ReadUInt32BigEndian(buffer.AsSpan(2)));
                        preferred = ToInt(BinaryPrimitives.ReadUInt32BigEndian(buffer.AsSpan(6)));
                        maximum = ToInt(BinaryPrimitives.ReadUInt32BigEndian(buffer.AsSpan(10)));
                    }

                    // Other information (name, description) is optional and ignored.
                    break;
                case NbdOptionReply.Ack:
                    if (size is null)
                    {
                        throw new NbdProtocolException($"{server} ended NBD_OPT_GO without sending NBD_INFO_EXPORT");
                    }

                    return Validate(new NbdExport(exportName, size.Value, flags, minimum, preferred, maximum, structured), server);
                case NbdOptionReply.ErrUnsupported:
                    return null;
                default:
                    throw Refusal(reply, buffer.AsSpan(0, length), exportName, server);
            }
        }
    }

    private static async Task<NbdExport> ExportNameAsync(Stream stream, byte[] buffer, byte[] nameBytes, string exportName, bool noZeroes, bool structured, string server, CancellationToken cancellationToken)
    {
        await SendOptionAsync(stream, buffer, NbdOption.ExportName, nameBytes, cancellationToken).ConfigureAwait(false);
        // No reply header: size, flags, and (unless both sides agreed otherwise) 124 zero bytes. A
        // server that does not have the export simply closes the connection.
        var length = 8 + 2 + (noZeroes ? 0 : 124);
        await ReadExactAsync(stream, buffer.AsMemory(0, length), server, $"the answer to NBD_OPT_EXPORT_NAME '{exportName}' (a server closes the connection when it has no such export)", cancellationToken).ConfigureAwait(false);
        var rawSize = BinaryPrimitives.ReadUInt64BigEndian(buffer);
        if (rawSize > long.MaxValue)
        {
            throw new NbdProtocolException($"{server} reported an export size of {rawSize} bytes");
        }

        var flags = (NbdTransmissionFlags)BinaryPrimitives.ReadUInt16BigEndian(buffer.AsSpan(8));
        return Validate(new NbdExport(exportName, (long)rawSize, flags, 1, 4096, NbdProtocol.DefaultMaxBlockSize, structured), server);
    }

    /// <summary>Checks what the server stated against the protocol and what a ublk device can be.</summary>
    private static NbdExport Validate(NbdExport export, string server)
    {
        if ((export.Flags & NbdTransmissionFlags.HasFlags) == 0)
        {
            throw new NbdProtocolException($"{server} sent transmission flags without NBD_FLAG_HAS_FLAGS (0x{(ushort)export.Flags:x4})");
        }

        static bool PowerOfTwo(int v) => v > 0 && (v & (v - 1)) == 0;
        if (!PowerOfTwo(export.MinimumBlockSize) || export.MinimumBlockSize > 64 * 1024
            || !PowerOfTwo(export.PreferredBlockSize) || export.PreferredBlockSize < export.MinimumBlockSize
            || export.MaximumPayload < export.MinimumBlockSize || (export.MaximumPayload != int.MaxValue && export.MaximumPayload % export.MinimumBlockSize != 0))
        {
            throw new NbdProtocolException(
                $"{server} stated invalid block sizes for export '{export.Name}': minimum {export.MinimumBlockSize}, preferred {export.PreferredBlockSize}, maximum {export.MaximumPayload}");
        }

        if (export.MaximumPayload < 4096)
        {
            throw new NbdRefusedException(StoreErrorCode.FailedPrecondition,
                $"export '{export.Name}' on {server} accepts at most {export.MaximumPayload} bytes per request; a ublk device needs at least 4096 (one page)");
        }

        if (export.MinimumBlockSize > 4096)
        {
            throw new NbdRefusedException(StoreErrorCode.FailedPrecondition,
                $"export '{export.Name}' on {server} needs I/O in units of {export.MinimumBlockSize} bytes; a ublk device's logical block is at most 4096");
        }

        if (export.UsableSizeBytes <= 0)
        {
            throw new NbdRefusedException(StoreErrorCode.FailedPrecondition, $"export '{export.Name}' on {server} is empty ({export.SizeBytes} bytes)");
        }

        return export;
    }

    private static Exception Refusal(NbdOptionReply reply, ReadOnlySpan<byte> data, string exportName, string server)
    {
        // Error replies may carry a message for humans; it is bounded and shown verbatim.
        var said = data.IsEmpty ? "" : $" (server said: {Printable(data)})";
        return reply switch
        {
            NbdOptionReply.ErrUnknown => (Exception)new NbdRefusedException(StoreErrorCode.NotFound, $"{server} has no export '{exportName}'{said}"),
            NbdOptionReply.ErrTlsRequired => TlsRequired(server),
            NbdOptionReply.ErrPolicy => new NbdRefusedException(StoreErrorCode.PermissionDenied, $"{server} refused export '{exportName}' by policy{said}"),
            NbdOptionReply.ErrShutdown => new NbdRefusedException(StoreErrorCode.Unavailable, $"{server} is shutting down{said}"),
            NbdOptionReply.ErrBlockSizeRequired => new NbdProtocolException($"{server} demands block-size negotiation although the client asked for NBD_INFO_BLOCK_SIZE{said}"),
            _ when ((uint)reply & (uint)NbdOptionReply.ErrorBit) != 0 => new NbdRefusedException(StoreErrorCode.FailedPrecondition, $"{server} refused export '{exportName}' with error {(uint)reply & ~(uint)NbdOptionReply.ErrorBit}{said}"),
            _ => new NbdProtocolException($"{server} answered NBD_OPT_GO with unknown reply type {(uint)reply}"),
        };
    }

    private static NbdRefusedException TlsRequired(string server) =>
        new(StoreErrorCode.FailedPrecondition, $"{server} requires TLS; set the parameter tls to on");

    private static async Task SendOptionAsync(Stream stream, byte[] buffer, NbdOption option, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        BinaryPrimitives.WriteUInt64BigEndian(buffer, NbdProtocol.OptionMagic);
        BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(8), (uint)option);
        BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(12), (uint)data.Length);
        data.Span.CopyTo(buffer.AsSpan(16));
        await stream.WriteAsync(buffer.AsMemory(0, 16 + data.Length), cancellationToken).ConfigureAwait(false);
        await stream.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Reads one option reply header and its data into the start of <paramref name="buffer"/>.</summary>
    private static async Task<(NbdOptionReply Reply, int Length)> ReadOptionReplyAsync(Stream stream, byte[] buffer, NbdOption option, string server, CancellationToken cancellationToken)
    {
        await ReadExactAsync(stream, buffer.AsMemory(0, 20), server, $"the reply to option {option}", cancellationToken).ConfigureAwait(false);
        var magic = BinaryPrimitives.ReadUInt64BigEndian(buffer);
        var echoed = BinaryPrimitives.ReadUInt32BigEndian(buffer.AsSpan(8));
        var reply = (NbdOptionReply)BinaryPrimitives.ReadUInt32BigEndian(buffer.AsSpan(12));
        var length = BinaryPrimitives.ReadUInt32BigEndian(buffer.AsSpan(16));
        if (magic != NbdProtocol.OptionReplyMagic)
        {
            throw new NbdProtocolException($"{server} sent an option reply with magic 0x{magic:x16}, expected 0x{NbdProtocol.OptionReplyMagic:x}");
        }

        if (echoed != (uint)option)
        {
            throw new NbdProtocolException($"{server} answered option {(uint)option} ({option}) with a reply for option {echoed}");
        }

        if (length > NbdProtocol.MaxControlPayload)
        {
            throw new NbdProtocolException($"{server} announced an option reply of {length} bytes; at most {NbdProtocol.MaxControlPayload} are accepted");
        }

        await ReadExactAsync(stream, buffer.AsMemory(0, (int)length), server, $"the reply to option {option}", cancellationToken).ConfigureAwait(false);
        return (reply, (int)length);
    }

    private static async Task ReadExactAsync(Stream stream, Memory<byte> destination, string server, string what, CancellationToken cancellationToken)
    {
        var done = 0;
        while (done < destination.Length)
        {
            var n = await stream.ReadAsync(destination[done..], cancellationToken).ConfigureAwait(false);
            if (n == 0)
            {
                throw new NbdProtocolException($"{server} closed the connection during {what} ({done} of {destination.Length} bytes received)");
            }

            done += n;
        }
    }

    private static void RequireLength(int length, int expected, string what, string server)
    {
        if (length != expected)
        {
            throw new NbdProtocolException($"{server} sent {what} of {length} bytes, expected {expected}");
        }
    }

    /// <summary>Block sizes are 32-bit unsigned; values above int.MaxValue mean "no limit" in practice.</summary>
    private static int ToInt(uint value) => value > int.MaxValue ? int.MaxValue : (int)value;

    private static string Printable(ReadOnlySpan<byte> data)
    {
        var text = Encoding.UTF8.GetString(data[..Math.Min(data.Length, 256)]);
        var sb = new StringBuilder(text.Length);
        foreach (var c in text)
        {
            sb.Append(char.IsControl(c) ? '?' : c);
        }

        return sb.ToString();
    }
}
