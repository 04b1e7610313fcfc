using Collector.Connections;
using Collector.Http;

namespace Collector.Output;

/// <summary>A header value the writer sends instead of the one received: a masked value, or the
/// redaction of a whole field (every occurrence of the name, joined, replaced by one value).</summary>
public readonly record struct HeaderEdit(int Index, byte[] Value, bool WholeField);

/// <summary>What the steps before the writer decided about one side of the exchange: the body
/// bytes to send under which plan, header values replaced, and header fields added (in order).
/// Reused from exchange to exchange by its owner: nothing here is made per exchange unless
/// something was found or changed.</summary>
public sealed class SideParts
{
    public HttpMessage Message = null!;
    /// <summary>Replaces the message's body when set (masked); else the message's own body is sent.</summary>
    public byte[]? BodyOverride;
    public int BodyOverrideLength;
    public BodyPlan Plan;
    public readonly List<HeaderEdit> Edits = new();
    public readonly List<(string Name, string Value)> Added = new();
    /// <summary>The x-collector-sensitive value for this side (CATEGORY@location, ...), when anything was found.</summary>
    public string? SensitiveNote;

    public ReadOnlySpan<byte> Body => BodyOverride is null ? Message.Body : BodyOverride.AsSpan(0, BodyOverrideLength);

    public void Reset(HttpMessage m)
    {
        Message = m;
        ReleaseBody();
        BodyOverrideLength = 0;
        Plan = default;
        Edits.Clear();
        Added.Clear();
        SensitiveNote = null;
    }

    /// <summary>The masked body's buffer goes back to its pool (it came from ArrayPool.Shared).</summary>
    public void ReleaseBody()
    {
        if (BodyOverride is not null) System.Buffers.ArrayPool<byte>.Shared.Return(BodyOverride);
        BodyOverride = null;
        BodyOverrideLength = 0;
    }

    /// <summary>The edit of field i, if any.</summary>
    public bool TryEdit(int i, out HeaderEdit edit)
    {
        foreach (var e in Edits)
            if (e.Index == i)
            {
                edit = e;
                return true;
            }
        edit = default;
        return false;
    }
}

/// <summary>Both sides and the request target, as the writer is to write them.</summary>
public sealed class MessageParts
{
    public readonly SideParts Request = new(), Response = new();
    /// <summary>Replaces the request target in the path field when set (a masked query string).</summary>
    public byte[]? TargetOverride;

    public void Reset(HttpExchange x)
    {
        Request.Reset(x.Request);
        Response.Reset(x.Response);
        TargetOverride = null;
    }

    public void Release()
    {
        Request.ReleaseBody();
        Response.ReleaseBody();
    }
}
