"""Starts llama-cpp-python's OpenAI-compatible server with llama.cpp's extra buffer types off.

Usage: python llama_server.py --model M.gguf --host 127.0.0.1 --port P [server flags...]

Why a wrapper: the server has no flag for llama.cpp's `use_extra_bufts`, and AMX builds crash
without it off on machines that do not grant AMX; see llama_cpp_no_amx.py.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_cpp_no_amx  # noqa: E402,F401  (patches the model defaults before the server loads)

from llama_cpp.server.__main__ import main  # noqa: E402  (after the patch on purpose)

if __name__ == "__main__":
    sys.argv[0] = "llama_cpp.server"
    main()
