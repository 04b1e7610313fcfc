using System.Runtime.InteropServices;

namespace Collector.Kernel;

/// <summary>P/Invoke declarations for libbpf.so.1 (Debian's libbpf 1.1). Only what the collector uses.
/// libbpf 1.x reports errors as NULL or a negative errno and also sets errno.</summary>
internal static unsafe partial class Interop
{
    internal static partial class Libbpf
    {
        private const string Lib = "libbpf.so.1";

        [LibraryImport(Lib, EntryPoint = "bpf_object__open_file", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
        internal static partial IntPtr ObjectOpenFile(string path, IntPtr opts);

        [LibraryImport(Lib, EntryPoint = "bpf_object__load", SetLastError = true)]
        internal static partial int ObjectLoad(BpfObjectHandle obj);

        [LibraryImport(Lib, EntryPoint = "bpf_object__close")]
        internal static partial void ObjectClose(IntPtr obj);

        [LibraryImport(Lib, EntryPoint = "bpf_object__find_map_by_name", StringMarshalling = StringMarshalling.Utf8)]
        internal static partial IntPtr ObjectFindMapByName(BpfObjectHandle obj, string name);

        [LibraryImport(Lib, EntryPoint = "bpf_object__find_program_by_name", StringMarshalling = StringMarshalling.Utf8)]
        internal static partial IntPtr ObjectFindProgramByName(BpfObjectHandle obj, string name);

        [LibraryImport(Lib, EntryPoint = "bpf_object__next_program")]
        internal static partial IntPtr ObjectNextProgram(BpfObjectHandle obj, IntPtr prev);

        [LibraryImport(Lib, EntryPoint = "bpf_program__name")]
        internal static partial IntPtr ProgramName(IntPtr prog);

        [LibraryImport(Lib, EntryPoint = "bpf_program__section_name")]
        internal static partial IntPtr ProgramSectionName(IntPtr prog);

        [LibraryImport(Lib, EntryPoint = "bpf_program__set_autoload")]
        internal static partial int ProgramSetAutoload(IntPtr prog, [MarshalAs(UnmanagedType.U1)] bool autoload);

        [LibraryImport(Lib, EntryPoint = "bpf_program__autoload")]
        [return: MarshalAs(UnmanagedType.U1)]
        internal static partial bool ProgramAutoload(IntPtr prog);

        [LibraryImport(Lib, EntryPoint = "bpf_map__set_autocreate")]
        internal static partial int MapSetAutocreate(IntPtr map, [MarshalAs(UnmanagedType.U1)] bool autocreate);

        [LibraryImport(Lib, EntryPoint = "bpf_map__name")]
        internal static partial IntPtr MapName(IntPtr map);

        [LibraryImport(Lib, EntryPoint = "bpf_object__next_map")]
        internal static partial IntPtr ObjectNextMap(BpfObjectHandle obj, IntPtr prev);

        /// <summary>1 when the kernel has the program type, 0 when not, a negative errno when the probe failed.</summary>
        [LibraryImport(Lib, EntryPoint = "libbpf_probe_bpf_prog_type")]
        internal static partial int ProbeProgramType(int progType, IntPtr opts);

        [LibraryImport(Lib, EntryPoint = "libbpf_probe_bpf_map_type")]
        internal static partial int ProbeMapType(int mapType, IntPtr opts);

        [LibraryImport(Lib, EntryPoint = "libbpf_probe_bpf_helper")]
        internal static partial int ProbeHelper(int progType, int helperId, IntPtr opts);

        /// <summary>The kernel's own BTF (/sys/kernel/btf/vmlinux); NULL with errno set when absent.</summary>
        [LibraryImport(Lib, EntryPoint = "btf__load_vmlinux_btf", SetLastError = true)]
        internal static partial IntPtr BtfLoadVmlinux();

        [LibraryImport(Lib, EntryPoint = "btf__find_by_name_kind", StringMarshalling = StringMarshalling.Utf8)]
        internal static partial int BtfFindByNameKind(BtfHandle btf, string name, uint kind);

        [LibraryImport(Lib, EntryPoint = "btf__free")]
        internal static partial void BtfFree(IntPtr btf);

        [LibraryImport(Lib, EntryPoint = "bpf_map__set_max_entries", SetLastError = true)]
        internal static partial int MapSetMaxEntries(IntPtr map, uint maxEntries);

        [LibraryImport(Lib, EntryPoint = "bpf_map__initial_value")]
        internal static partial IntPtr MapInitialValue(IntPtr map, out nuint size);

        [LibraryImport(Lib, EntryPoint = "bpf_map__fd")]
        internal static partial int MapFd(IntPtr map);

        [LibraryImport(Lib, EntryPoint = "bpf_program__attach", SetLastError = true)]
        internal static partial IntPtr ProgramAttach(IntPtr prog);

        [LibraryImport(Lib, EntryPoint = "bpf_program__attach_uprobe_opts", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
        internal static partial IntPtr ProgramAttachUprobeOpts(IntPtr prog, int pid, string binaryPath, nuint funcOffset, UprobeOpts* opts);

        [LibraryImport(Lib, EntryPoint = "bpf_link__destroy")]
        internal static partial int LinkDestroy(IntPtr link);

        [LibraryImport(Lib, EntryPoint = "bpf_map_lookup_elem", SetLastError = true)]
        internal static partial int MapLookupElem(int fd, void* key, void* value);

        [LibraryImport(Lib, EntryPoint = "bpf_map_update_elem", SetLastError = true)]
        internal static partial int MapUpdateElem(int fd, void* key, void* value, ulong flags);

        [LibraryImport(Lib, EntryPoint = "bpf_map_delete_elem", SetLastError = true)]
        internal static partial int MapDeleteElem(int fd, void* key);

        [LibraryImport(Lib, EntryPoint = "libbpf_num_possible_cpus")]
        internal static partial int NumPossibleCpus();

        [LibraryImport(Lib, EntryPoint = "ring_buffer__new", SetLastError = true)]
        internal static partial IntPtr RingBufferNew(int mapFd, delegate* unmanaged<IntPtr, IntPtr, nuint, int> sampleCallback, IntPtr ctx, IntPtr opts);

        [LibraryImport(Lib, EntryPoint = "ring_buffer__poll", SetLastError = true)]
        internal static partial int RingBufferPoll(RingBufferHandle rb, int timeoutMs);

        [LibraryImport(Lib, EntryPoint = "ring_buffer__consume", SetLastError = true)]
        internal static partial int RingBufferConsume(RingBufferHandle rb);

        [LibraryImport(Lib, EntryPoint = "ring_buffer__free")]
        internal static partial void RingBufferFree(IntPtr rb);

        [LibraryImport(Lib, EntryPoint = "libbpf_set_print")]
        internal static partial IntPtr SetPrint(delegate* unmanaged<int, IntPtr, IntPtr, int> fn);

        /// <summary>struct bpf_uprobe_opts of libbpf 1.1 (sz first: libbpf checks it).</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct UprobeOpts
        {
            public nuint Size;
            public nuint RefCtrOffset;
            public ulong BpfCookie;
            public byte Retprobe;
            public IntPtr FuncName;
        }

        // uapi/linux/bpf.h and btf.h values
        internal const int ProgTypeTracepoint = 5;
        internal const int MapTypeArray = 2;
        internal const int MapTypeRingbuf = 27;
        internal const int MapTypeTaskStorage = 29;
        internal const int FuncGetCurrentTaskBtf = 158;
        internal const int FuncLoop = 181;
        internal const int FuncRingbufReserveDynptr = 198;
        internal const uint BtfKindFunc = 12;

        internal const int PrintWarn = 0;
        internal const int PrintInfo = 1;
        internal const int PrintDebug = 2;
    }
}
