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
        internal static partial int ObjectLoad(IntPtr obj);

        [LibraryImport(Lib, EntryPoint = "bpf_object__close")]
        internal static partial void ObjectClose(IntPtr obj);

        [LibraryImport(Lib, EntryPoint = "bpf_object__find_map_by_name", StringMarshalling = StringMarshalling.Utf8)]
        internal static partial IntPtr ObjectFindMapByName(IntPtr obj, string name);

        [LibraryImport(Lib, EntryPoint = "bpf_object__find_program_by_name", StringMarshalling = StringMarshalling.Utf8)]
        internal static partial IntPtr ObjectFindProgramByName(IntPtr obj, string name);

        [LibraryImport(Lib, EntryPoint = "bpf_object__next_program")]
        internal static partial IntPtr ObjectNextProgram(IntPtr obj, IntPtr prev);

        [LibraryImport(Lib, EntryPoint = "bpf_program__name")]
        internal static partial IntPtr ProgramName(IntPtr prog);

        [LibraryImport(Lib, EntryPoint = "bpf_program__section_name")]
        internal static partial IntPtr ProgramSectionName(IntPtr prog);

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
        internal static partial int RingBufferPoll(IntPtr rb, int timeoutMs);

        [LibraryImport(Lib, EntryPoint = "ring_buffer__consume", SetLastError = true)]
        internal static partial int RingBufferConsume(IntPtr rb);

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

        internal const int PrintWarn = 0;
        internal const int PrintInfo = 1;
        internal const int PrintDebug = 2;
    }
}
