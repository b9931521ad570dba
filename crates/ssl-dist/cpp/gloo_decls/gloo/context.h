// Declarations of the parts of Gloo that libtorch's ProcessGroupGloo.hpp names. The torch
// wheel ships libtorch's Gloo code compiled into libtorch_cpu.so but not Gloo's headers, so
// ssl-dist declares the few types the header needs to parse. Nothing here is defined or
// instantiated by ssl-dist: the shim only calls ProcessGroupGloo's exported, out-of-line
// functions (constructor, Options::create_default, the collectives through Backend's vtable),
// and every Gloo object is owned through a pointer, so no class layout below is relied on.
#pragma once
#include <chrono>

namespace gloo {
class Context {
 public:
  void setTimeout(std::chrono::milliseconds timeout);
};
} // namespace gloo
