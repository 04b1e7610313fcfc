using System.Runtime.CompilerServices;
using Collector.Http2;

namespace Collector.Tests.Support;

internal static class AccountingChecks
{
    /// <summary>Every test in this assembly that drives an HTTP/2 session in process also checks
    /// its running count of retained bytes against a full recount at each read.</summary>
    [ModuleInitializer]
    internal static void Enable() => Http2Session.CheckRetainedAccounting = true;
}
