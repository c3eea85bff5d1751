namespace UblkCsi.Stores.Nbd;

/// <summary>
/// What the handshake learnt about an export: its size, the transmission flags it advertised and the
/// block-size constraints the client promised to honour.
/// </summary>
/// <param name="Name">Export name as requested ("" is the server's default export).</param>
/// <param name="SizeBytes">Export size in bytes.</param>
/// <param name="Flags">Transmission flags.</param>
/// <param name="MinimumBlockSize">Smallest unit of I/O the server accepts (1 when it states none).</param>
/// <param name="PreferredBlockSize">Unit that avoids read-modify-write on the server.</param>
/// <param name="MaximumPayload">Largest READ or WRITE payload the server accepts.</param>
/// <param name="StructuredReplies">True when NBD_OPT_STRUCTURED_REPLY was acknowledged.</param>
public sealed record NbdExport(
    string Name,
    long SizeBytes,
    NbdTransmissionFlags Flags,
    int MinimumBlockSize,
    int PreferredBlockSize,
    int MaximumPayload,
    bool StructuredReplies)
{
    public bool IsReadOnly => (Flags & NbdTransmissionFlags.ReadOnly) != 0;

    public bool CanFlush => (Flags & NbdTransmissionFlags.SendFlush) != 0;

    public bool CanFua => (Flags & NbdTransmissionFlags.SendFua) != 0;

    public bool CanTrim => (Flags & NbdTransmissionFlags.SendTrim) != 0;

    public bool CanWriteZeroes => (Flags & NbdTransmissionFlags.SendWriteZeroes) != 0;

    public bool CanMultiConn => (Flags & NbdTransmissionFlags.CanMultiConn) != 0;

    /// <summary>
    /// The device's logical block: 512, or the server's minimum block when larger (ublk allows up to
    /// 4096), so every request the kernel sends already satisfies the server's minimum.
    /// </summary>
    public int LogicalBlockSize => Math.Max(StoreLimits.IoAlignment, MinimumBlockSize);

    /// <summary>The device size: the export size rounded down to the logical block (a tail shorter than a block is unusable).</summary>
    public long UsableSizeBytes => SizeBytes / LogicalBlockSize * LogicalBlockSize;

    /// <summary>One line for logs and conditions.</summary>
    public override string ToString() =>
        $"export '{Name}' size {SizeBytes} flags [{Flags}] block {MinimumBlockSize}/{PreferredBlockSize}/{MaximumPayload}" +
        (StructuredReplies ? " structured replies" : " simple replies");
}
