# make run   — install what is missing, build, and run the collector in the foreground
# make test  — install what is missing, build, and run the whole test suite
SHELL := /bin/bash
BUILD := build
BPF_OBJ := $(BUILD)/collector.bpf.o
COLLECTOR := $(BUILD)/collector/Collector
CLANG ?= clang
DOTNET ?= dotnet
export DOTNET_CLI_TELEMETRY_OPTOUT := 1
export DOTNET_NOLOGO := 1

BPF_SRC := $(wildcard bpf/*.c bpf/*.h)
CS_SRC := $(shell find src -name '*.cs' -o -name '*.csproj') Collector.sln

.PHONY: all deps build bpf collector native run test test-kernels bench bench-capture fuzz clean

all: build

deps:
	@scripts/deps.sh

$(BUILD)/vmlinux.h:
	@mkdir -p $(BUILD)
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > $@.tmp && mv $@.tmp $@

BPF_CFLAGS := -g -O2 -mcpu=v3 -target bpf -D__TARGET_ARCH_x86 -Wall -Werror -Wno-unused-function -I $(BUILD) -I bpf

# CO-RE: the object is relocated against the running kernel's BTF when it is loaded. One object
# holds two sets of the same programs (see bpf/common.h): the current one and the compat one
# (COLLECTOR_COMPAT, for kernels before bpf_loop and task storage); the collector loads one of them.
$(BUILD)/collector-current.o: $(BPF_SRC) $(BUILD)/vmlinux.h
	$(CLANG) $(BPF_CFLAGS) -c bpf/collector.bpf.c -o $@

$(BUILD)/collector-compat.o: $(BPF_SRC) $(BUILD)/vmlinux.h
	$(CLANG) $(BPF_CFLAGS) -DCOLLECTOR_COMPAT -c bpf/collector.bpf.c -o $@

$(BPF_OBJ): $(BUILD)/collector-current.o $(BUILD)/collector-compat.o
	bpftool gen object $@ $^

bpf: $(BPF_OBJ)

native: $(BUILD)/layout_dump $(BUILD)/tls_longjmp $(BUILD)/mock_kafka

$(BUILD)/layout_dump: native/layout_dump.c bpf/collector.h
	@mkdir -p $(BUILD)
	$(CC) -O1 -Wall -Werror -I bpf -o $@ native/layout_dump.c

# librdkafka's mock cluster as a process of its own, the broker of bench-capture's kafka mode
$(BUILD)/mock_kafka: native/mock_kafka.c
	@mkdir -p $(BUILD)
	$(CC) -O1 -Wall -Werror -o $@ native/mock_kafka.c -ldl

$(BUILD)/tls_longjmp: native/tls_longjmp.c
	@mkdir -p $(BUILD)
	$(CC) -O1 -Wall -Werror -o $@ native/tls_longjmp.c -lssl -lcrypto

$(COLLECTOR): $(BPF_OBJ) $(CS_SRC) scripts/build-release.sh
	scripts/build-release.sh $(BUILD)/collector

collector: $(COLLECTOR)

build: deps bpf native collector

run: build
	PROBE_ALL_PID=$${PROBE_ALL_PID:-true} $(COLLECTOR)

test: build
	@rm -f $(BUILD)/kernel-matrix.log
	$(DOTNET) test tests/Collector.Tests/Collector.Tests.csproj -c Release --logger "console;verbosity=normal" 2>&1 | tee $(BUILD)/test.log; \
		status=$${PIPESTATUS[0]}; cat $(BUILD)/kernel-matrix.log 2>/dev/null; exit $$status

# the kernel matrix alone: 5.10, 6.1, 6.12 and 6.12-rt, each booted under qemu (part of make test)
test-kernels: build
	@rm -f $(BUILD)/kernel-matrix.log
	$(DOTNET) test tests/Collector.Tests/Collector.Tests.csproj -c Release --filter FullyQualifiedName~KernelMatrixTests \
		--logger "console;verbosity=normal"; status=$$?; cat $(BUILD)/kernel-matrix.log 2>/dev/null; exit $$status

bench: build
	$(DOTNET) run -c Release --project bench/Collector.Bench/Collector.Bench.csproj

# capture overhead in the real kernel: nginx + wrk with no probes, count-only probes, the collector
bench-capture: build
	bench/capture-bench.sh

# coverage-guided fuzzing of the parsers (SharpFuzz + afl++), not part of make test: FUZZ_SECONDS per target
fuzz: build
	scripts/fuzz.sh

clean:
	rm -rf $(BUILD) src/*/bin src/*/obj tests/*/bin tests/*/obj bench/*/bin bench/*/obj
