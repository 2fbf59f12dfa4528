"""llama-cpp-python with llama.cpp's extra buffer types off. Import it before loading a model.

Why: a llama-cpp-python wheel built on a CPU that reports AMX puts Q4_1 weights in llama.cpp's
AMX buffer type (an "extra buffer type" that repacks weights), and on a machine (or VM) whose
kernel does not grant AMX tile state the first matrix product dies with a general protection
fault in `ldtilecfg`. Neither `Llama(...)` nor the server has a flag for
`llama_model_params.use_extra_bufts`, so importing this module makes every model's default
parameters carry `use_extra_bufts = False`: the plain CPU kernels run, and the log-probs are
those of llama.cpp's reference CPU path (also without its other repacked kernels, so slower).

Used by tests/support/llama_server.py, benches/peers/llama_cpp_score.py and the fixture
generators in tests/reference/.
"""

import llama_cpp
import llama_cpp.llama_cpp as lib

_default_params = lib.llama_model_default_params


def _params_without_extra_bufts():
    params = _default_params()
    params.use_extra_bufts = False
    return params


# The function is bound in the C-binding module (which llama_cpp.llama and the server call) and
# re-exported by the package: both names are replaced.
lib.llama_model_default_params = _params_without_extra_bufts
llama_cpp.llama_model_default_params = _params_without_extra_bufts
