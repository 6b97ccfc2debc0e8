# Convenience targets around CMake, busted and luacheck. `make test` is the whole suite.
BUILD ?= build

.PHONY: all build test lint ctest busted asan bench clean

all: build

build:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD) -j2

ctest: build
	ctest --test-dir $(BUILD) --output-on-failure

busted: build
	busted

lint:
	luacheck --no-color -q lua spec apps bench bin/weft

test: lint ctest busted

# The suite under AddressSanitizer and UBSan (the C tests, then the specs with libasan preloaded).
asan:
	cmake -S . -B build-asan -DWEFT_ASAN=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	cmake --build build-asan -j2
	ctest --test-dir build-asan --output-on-failure
	WEFT_BUILD_DIR=build-asan ASAN_OPTIONS=detect_leaks=0 \
	  LD_PRELOAD=$$(gcc -print-file-name=libasan.so):$$(gcc -print-file-name=libubsan.so) \
	  busted --cpath="build-asan/?.so"

bench: build
	bench/run

clean:
	rm -rf $(BUILD) build-asan build.luarocks
