// Prints, for the toolchain that built it, where the socket's fd sits behind a *crypto/tls.Conn,
// which the collector's eBPF probes read without DWARF (src/Collector/Kernel/Go/GoStructOffsets.cs
// holds them per Go version; GoBinaryTests compares this program's output with that table).
// Offsets come from reflect; then the chain is followed in memory on a real loopback connection
// and must reach the fd the runtime itself reports, which also checks the interface layout
// (itab word, data word) that reflect cannot show. Standard library only; builds with Go 1.15.
//
// Output, one "name value" per line, then "ok":
//   tls.Conn.conn N            the net.Conn interface inside tls.Conn
//   iface.itab N, iface.data N the interface's type word and data word
//   net.TCPConn.fd N           *netFD inside net.TCPConn (its embedded conn's fd)
//   net.netFD.Sysfd N          poll.FD.Sysfd inside netFD (its pfd's)
//   Sysfd.size N               bytes of Sysfd
//   chain.fd N, runtime.fd N   the fd reached through the offsets, and the one SyscallConn gives
package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"reflect"
	"unsafe"
)

func field(t reflect.Type, name string) reflect.StructField {
	f, ok := t.FieldByName(name)
	if !ok {
		fmt.Fprintf(os.Stderr, "go-offsets: %s has no field %s\n", t, name)
		os.Exit(1)
	}
	return f
}

func word(p uintptr) uintptr { return *(*uintptr)(unsafe.Pointer(p)) }

func main() {
	conn := field(reflect.TypeOf(tls.Conn{}), "conn")
	inner := field(reflect.TypeOf(net.TCPConn{}), "conn")
	fd := field(inner.Type, "fd")
	pfd := field(fd.Type.Elem(), "pfd")
	sysfd := field(pfd.Type, "Sysfd")
	tcpConnFd := inner.Offset + fd.Offset
	netFdSysfd := pfd.Offset + sysfd.Offset

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-offsets:", err)
		os.Exit(1)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-offsets:", err)
		os.Exit(1)
	}
	defer c.Close()
	tcp := c.(*net.TCPConn)
	// no handshake: only the struct is looked at
	t := tls.Client(c, &tls.Config{InsecureSkipVerify: true})

	base := uintptr(unsafe.Pointer(t)) + conn.Offset
	var other net.Conn = tcp
	itab, data := -1, -1
	for off := uintptr(0); off < 16; off += 8 {
		if word(base+off) == uintptr(unsafe.Pointer(tcp)) {
			data = int(off)
		} else if word(base+off) == word(uintptr(unsafe.Pointer(&other))) {
			itab = int(off)
		}
	}
	if itab < 0 || data < 0 {
		fmt.Fprintln(os.Stderr, "go-offsets: the interface words were not where expected")
		os.Exit(1)
	}
	netFD := word(word(base+uintptr(data)) + tcpConnFd)
	chain := *(*int64)(unsafe.Pointer(netFD + netFdSysfd))

	raw, err := tcp.SyscallConn()
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-offsets:", err)
		os.Exit(1)
	}
	runtimeFd := uintptr(0)
	raw.Control(func(f uintptr) { runtimeFd = f })

	fmt.Printf("tls.Conn.conn %d\n", conn.Offset)
	fmt.Printf("iface.itab %d\n", itab)
	fmt.Printf("iface.data %d\n", data)
	fmt.Printf("net.TCPConn.fd %d\n", tcpConnFd)
	fmt.Printf("net.netFD.Sysfd %d\n", netFdSysfd)
	fmt.Printf("Sysfd.size %d\n", sysfd.Type.Size())
	fmt.Printf("chain.fd %d\n", chain)
	fmt.Printf("runtime.fd %d\n", runtimeFd)
	if uintptr(chain) != runtimeFd {
		fmt.Fprintln(os.Stderr, "go-offsets: the chain does not reach the connection's fd")
		os.Exit(1)
	}
	fmt.Println("ok")
}
