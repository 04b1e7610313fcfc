using System.Runtime.InteropServices;

namespace Collector.Kernel;

/// <summary>A libbpf call failed: names the call and the errno it left.</summary>
public sealed class BpfException(string what, int errno)
    : Exception($"{what}: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})")
{
    public int Errno { get; } = errno;
}

/// <summary>struct bpf_object *: closing it unloads every program and map it owns.</summary>
internal sealed class BpfObjectHandle : SafeHandle
{
    public BpfObjectHandle() : base(IntPtr.Zero, ownsHandle: true) { }
    public override bool IsInvalid => handle == IntPtr.Zero;

    public static BpfObjectHandle Open(string path)
    {
        var ptr = Interop.Libbpf.ObjectOpenFile(path, IntPtr.Zero);
        if (ptr == IntPtr.Zero) throw new BpfException($"opening {path}", Marshal.GetLastPInvokeError());
        var h = new BpfObjectHandle();
        h.SetHandle(ptr);
        return h;
    }

    protected override bool ReleaseHandle()
    {
        Interop.Libbpf.ObjectClose(handle);
        return true;
    }
}

/// <summary>struct bpf_link *: destroying it detaches the probe.</summary>
internal sealed class BpfLinkHandle : SafeHandle
{
    public BpfLinkHandle() : base(IntPtr.Zero, ownsHandle: true) { }
    public override bool IsInvalid => handle == IntPtr.Zero;

    public static BpfLinkHandle FromPointer(IntPtr ptr, string what)
    {
        if (ptr == IntPtr.Zero) throw new BpfException(what, Marshal.GetLastPInvokeError());
        var h = new BpfLinkHandle();
        h.SetHandle(ptr);
        return h;
    }

    protected override bool ReleaseHandle()
    {
        Interop.Libbpf.LinkDestroy(handle);
        return true;
    }
}

/// <summary>struct ring_buffer *.</summary>
internal sealed class RingBufferHandle : SafeHandle
{
    public RingBufferHandle() : base(IntPtr.Zero, ownsHandle: true) { }
    public override bool IsInvalid => handle == IntPtr.Zero;

    public static RingBufferHandle FromPointer(IntPtr ptr)
    {
        if (ptr == IntPtr.Zero) throw new BpfException("ring_buffer__new", Marshal.GetLastPInvokeError());
        var h = new RingBufferHandle();
        h.SetHandle(ptr);
        return h;
    }

    protected override bool ReleaseHandle()
    {
        Interop.Libbpf.RingBufferFree(handle);
        return true;
    }
}

/// <summary>struct btf * of the running kernel.</summary>
internal sealed class BtfHandle : SafeHandle
{
    public BtfHandle() : base(IntPtr.Zero, ownsHandle: true) { }
    public override bool IsInvalid => handle == IntPtr.Zero;

    /// <summary>The kernel's BTF, or null when it has none.</summary>
    public static BtfHandle? LoadVmlinux()
    {
        var ptr = Interop.Libbpf.BtfLoadVmlinux();
        if (ptr == IntPtr.Zero) return null;
        var h = new BtfHandle();
        h.SetHandle(ptr);
        return h;
    }

    protected override bool ReleaseHandle()
    {
        Interop.Libbpf.BtfFree(handle);
        return true;
    }
}
