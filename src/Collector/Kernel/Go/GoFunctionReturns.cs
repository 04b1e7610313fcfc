using Iced.Intel;

namespace Collector.Kernel.Go;

/// <summary>The return instructions of a Go function, found by decoding it from its entry with Iced.
/// Go code must never get a uretprobe (it replaces the return address on the goroutine's stack,
/// which Go's stack copying and unwinder reject), so its returns are probed where they are: a
/// uprobe on each RET, which the kernel single-steps out of line without touching the stack.
/// Decoding is linear from the entry: Go's compiler puts no data in the text between instructions,
/// and the bytes between the function's end and the next function's entry are int3 padding, which
/// decodes as int3. Anything that does not decode is an error, never skipped: a RET found after a
/// desynchronised decode would be a probe in the middle of an instruction.</summary>
internal static class GoFunctionReturns
{
    // crypto/tls's Read and Write are about 1 KB; no Go function of interest is near this
    private const long MaxFunctionBytes = 1 << 20;

    public static GoFunction Decode(ElfImage elf, string name, ulong entry, ulong size)
    {
        if (size == 0 || size > MaxFunctionBytes)
            throw GoAnalysisException.Invalid($"{name}: size {size} is not a function's");
        var fileOffset = elf.FileOffset(entry, size);
        if (fileOffset < 0)
            throw GoAnalysisException.Invalid($"{name}: 0x{entry:x}+{size} is not in a loaded part of the file");
        if (elf.SegmentOfOffset(fileOffset) is not { } seg || (seg.Flags & ElfImage.PfX) == 0)
            throw GoAnalysisException.Invalid($"{name}: 0x{entry:x} is not in an executable segment");
        var code = elf.Read(fileOffset, (long)size, MaxFunctionBytes, name);

        var end = entry + size;
        var returns = new List<ulong>();
        // the prologue's stores of the first three register arguments into their spill slots
        // (above the return address): RAX at +8, RBX at +16, RCX at +24 of the entry's RSP
        long below = 0; // how far RSP has moved below its value at the entry
        var spilled = 0;
        var beforeCall = true;
        var decoder = Decoder.Create(64, new ByteArrayCodeReader(code), entry, DecoderOptions.None);
        while (decoder.IP < end)
        {
            decoder.Decode(out var ins);
            if (ins.IsInvalid)
                throw GoAnalysisException.Invalid($"{name}: no valid instruction at 0x{ins.IP:x} ({decoder.LastError})");
            if (beforeCall)
                spilled |= PrologueSpill(ins, ref below);
            switch (ins.FlowControl)
            {
                case FlowControl.Call or FlowControl.IndirectCall:
                    beforeCall = false;
                    break;
                case FlowControl.Return:
                    if (ins.Mnemonic != Mnemonic.Ret)
                        throw new GoAnalysisException(GoBinaryStatus.Unsupported, $"{name}: {ins.Mnemonic} at 0x{ins.IP:x} is not a near return");
                    returns.Add((ulong)fileOffset + (ins.IP - entry));
                    break;
                case FlowControl.UnconditionalBranch or FlowControl.ConditionalBranch
                    when ins.Op0Kind is OpKind.NearBranch64 && (ins.NearBranchTarget < entry || ins.NearBranchTarget >= end):
                    // a tail call leaves through another function's RET, which these probes would not see
                    throw new GoAnalysisException(GoBinaryStatus.Unsupported,
                        $"{name}: the jump at 0x{ins.IP:x} leaves the function (to 0x{ins.NearBranchTarget:x}); its returns cannot all be probed");
            }
        }
        if (returns.Count == 0) throw GoAnalysisException.Invalid($"{name}: no return instruction in {size} bytes");
        return new GoFunction(name, entry, (ulong)fileOffset, size, returns) { ArgsSpilled = spilled == 0b111 };
    }

    private static readonly Register[] SpilledArgs = [Register.RAX, Register.RBX, Register.RCX];

    /// <summary>Follows RSP through the prologue (PUSH, SUB RSP) and returns the bit of an argument
    /// register stored into its spill slot by this instruction (bit i: SpilledArgs[i]), 0 if none.
    /// Go's compiler spills the register arguments a function keeps across calls into the slots
    /// its caller reserved for them (their homes); a function that does so before its first call
    /// has them there at every RET too, unless it assigns the argument itself (Write does so for
    /// TLS 1.0's 1/n-1 split), which the program's check of n against the slice's length catches.</summary>
    private static int PrologueSpill(in Instruction ins, ref long below)
    {
        if (ins.Mnemonic == Mnemonic.Push && ins.Op0Kind == OpKind.Register)
        {
            below += 8;
            return 0;
        }
        if (ins.Mnemonic == Mnemonic.Sub && ins.Op0Kind == OpKind.Register && ins.Op0Register == Register.RSP &&
            ins.Op1Kind is OpKind.Immediate8to64 or OpKind.Immediate32to64 or OpKind.Immediate32 or OpKind.Immediate8)
        {
            below += (long)ins.GetImmediate(1);
            return 0;
        }
        if (ins.Mnemonic != Mnemonic.Mov || ins.Op0Kind != OpKind.Memory || ins.Op1Kind != OpKind.Register ||
            ins.MemoryBase != Register.RSP || ins.MemoryIndex != Register.None)
            return 0;
        var slot = (long)ins.MemoryDisplacement64 - below; // relative to the entry's RSP
        for (var i = 0; i < SpilledArgs.Length; i++)
            if (ins.Op1Register == SpilledArgs[i] && slot == 8 + 8 * i)
                return 1 << i;
        return 0;
    }
}
