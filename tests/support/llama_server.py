"""Starts llama-cpp-python's OpenAI-compatible server with llama.cpp's extra buffer types off.

Usage: python llama_server.py --model M.gguf --host 127.0.0.1 --port P [server flags...]

Why a wrapper: a llama-cpp-python wheel built on a CPU that reports AMX puts Q4_1 weights in
llama.cpp's AMX buffer type, and on a machine (or VM) where the kernel does not grant AMX tile
state the first matrix product dies with a general protection fault in `ldtilecfg`. The server
has no flag for `llama_model_params.use_extra_bufts`, so this sets it to false before the model
is loaded; the plain CPU kernels are used and the log-probs are those of llama.cpp's reference
CPU path.
"""

import sys

import llama_cpp.llama_cpp as lib

_default_params = lib.llama_model_default_params


def _params_without_extra_bufts():
    params = _default_params()
    params.use_extra_bufts = False
    return params


lib.llama_model_default_params = _params_without_extra_bufts

from llama_cpp.server.__main__ import main  # noqa: E402  (after the patch on purpose)

if __name__ == "__main__":
    sys.argv[0] = "llama_cpp.server"
    main()
