// The C ABI ssl-dist's Rust code calls: a TCPStore, a Gloo process group over it (and, on
// request, an NCCL one from libtorch_cuda), and the collectives the trainer needs, on
// at::Tensor handles (what a tch::Tensor points at).
// Every function returns NULL on success or a malloc'd message (freed by ssl_dist_free_string)
// describing the C++ exception it caught; no exception crosses into Rust.
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif

#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/distributed/c10d/Functional.hpp>
#include <torch/csrc/distributed/c10d/GroupRegistry.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <dlfcn.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

namespace {

struct Store {
  c10::intrusive_ptr<c10d::Store> store;
};

// Gloo or NCCL: every collective goes through Backend's virtual functions.
struct Group {
  c10::intrusive_ptr<c10d::Backend> pg;
  std::chrono::milliseconds timeout;
};

// A c10d::ProcessGroup registered by name for the functional collectives.
struct Registered {
  std::string name;
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
};

char* message(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, s.c_str(), s.size() + 1);
  }
  return out;
}

template <typename F>
char* guarded(F&& f) {
  try {
    f();
    return nullptr;
  } catch (const c10::Error& e) {
    return message(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return message(e.what());
  } catch (...) {
    return message("unknown C++ exception");
  }
}

void wait(const c10::intrusive_ptr<c10d::Work>& work, std::chrono::milliseconds timeout) {
  if (!work->wait(timeout)) {
    throw std::runtime_error("collective timed out");
  }
}

std::vector<at::Tensor> tensors(at::Tensor** ts, int n) {
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (int i = 0; i < n; ++i) {
    v.push_back(*ts[i]);
  }
  return v;
}

// ProcessGroupNCCL lives in libtorch_cuda.so, which ssl-rs loads at run time (never links),
// and its header pulls in the CUDA toolkit's and NCCL's headers, which a CPU build does not
// have. So the shim constructs it through its two exported constructors, looked up by their
// Itanium-mangled names in the running process, in memory it allocates itself; everything
// after construction goes through Backend's vtable, as for Gloo. The reserved sizes are upper
// bounds: torch 2.11.0's ProcessGroupNCCL is 1112 bytes (the sized delete in its deleting
// destructor) and its Options is a few hundred. libtorch's deleting destructors free the
// memory with the global operator delete, which pairs with the operator new used here.
constexpr std::size_t kNcclGroupBytes = 16384;
constexpr std::size_t kNcclOptionsBytes = 4096;
constexpr const char* kNcclOptionsCtor = "_ZN4c10d16ProcessGroupNCCL7OptionsC1Eb";
constexpr const char* kNcclGroupCtor =
    "_ZN4c10d16ProcessGroupNCCLC1EN3c1013intrusive_ptrINS_5StoreENS1_6detail34intrusive_"
    "target_default_null_typeIS3_EEEEiiNS2_INS0_7OptionsENS5_IS8_EEEE";

// ProcessGroupNCCL::Options::Options(bool is_high_priority_stream)
using NcclOptionsCtor = void (*)(void* self, bool high_priority);
// ProcessGroupNCCL::ProcessGroupNCCL(intrusive_ptr<Store>, int rank, int size,
// intrusive_ptr<Options>): Options derives from Backend::Options alone, so the pointer types
// share one representation, and by-value intrusive_ptrs are passed the same way.
using NcclGroupCtor = void (*)(
    void* self,
    c10::intrusive_ptr<c10d::Store> store,
    int rank,
    int size,
    c10::intrusive_ptr<c10d::Backend::Options> options);

void* symbol(const char* name) {
  void* f = dlsym(RTLD_DEFAULT, name);
  if (f == nullptr) {
    throw std::runtime_error(
        std::string("NCCL needs a CUDA build of libtorch loaded in the process (") + name +
        " is not defined: is libtorch_cuda.so present?)");
  }
  return f;
}

// Runs `ctor` on fresh zeroed memory of `bytes` and hands the object to an intrusive_ptr (its
// reference count starts at 0, as after `new`).
template <typename T, typename Ctor>
c10::intrusive_ptr<T> construct(std::size_t bytes, Ctor&& ctor) {
  void* mem = ::operator new(bytes);
  std::memset(mem, 0, bytes);
  try {
    ctor(mem);
  } catch (...) {
    ::operator delete(mem);
    throw;
  }
  return c10::intrusive_ptr<T>::unsafe_steal_from_new(static_cast<T*>(mem));
}

// PyTorch's functional collectives, all-gather forward and reduce-scatter (sum) backward, as
// one autograd function: what `_c10d_functional_autograd::all_gather_into_tensor` does, except
// that the incoming gradient is made contiguous first (the functional reduce-scatter refuses a
// broadcast gradient, such as the one of a sum).
struct GatherWithGrad : public torch::autograd::Function<GatherWithGrad> {
  static at::Tensor forward(
      torch::autograd::AutogradContext* ctx,
      const at::Tensor& input,
      int64_t world,
      std::string name) {
    ctx->saved_data["world"] = world;
    ctx->saved_data["name"] = name;
    return c10d::wait_tensor(c10d::all_gather_into_tensor(input.contiguous(), world, name));
  }

  static torch::autograd::variable_list backward(
      torch::autograd::AutogradContext* ctx,
      torch::autograd::variable_list grads) {
    const int64_t world = ctx->saved_data["world"].toInt();
    const std::string name = ctx->saved_data["name"].toStringRef();
    at::Tensor grad = c10d::wait_tensor(c10d::reduce_scatter_tensor(grads[0].contiguous(), "sum", world, name));
    return {grad, at::Tensor(), at::Tensor()};
  }
};

} // namespace

extern "C" {

void ssl_dist_free_string(char* s) {
  std::free(s);
}

char* ssl_dist_store_new(
    const char* host,
    uint16_t port,
    int world,
    bool is_server,
    const char* prefix,
    int64_t timeout_ms,
    void** out) {
  return guarded([&] {
    c10d::TCPStoreOptions opts;
    opts.port = port;
    opts.isServer = is_server;
    opts.numWorkers = static_cast<std::size_t>(world);
    // Every rank counts itself in; the server returns once all have (as torch does).
    opts.waitWorkers = true;
    opts.timeout = std::chrono::milliseconds(timeout_ms);
    c10::intrusive_ptr<c10d::Store> store =
        c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    std::string p(prefix);
    if (!p.empty()) {
      store = c10::make_intrusive<c10d::PrefixStore>(p, store);
    }
    *out = new Store{store};
  });
}

void ssl_dist_store_free(void* store) {
  delete static_cast<Store*>(store);
}

// interface: a network interface name (GLOO_SOCKET_IFNAME), or empty for the interface the
// host name resolves to (Gloo's default device).
char* ssl_dist_gloo_new(
    void* store,
    int rank,
    int world,
    const char* interface,
    int64_t timeout_ms,
    void** out) {
  return guarded([&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
    std::string iface(interface);
    if (iface.empty()) {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    } else {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(iface));
    }
    auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(
        static_cast<Store*>(store)->store, rank, world, opts);
    *out = new Group{pg, timeout};
  });
}

// An error when libtorch_cuda's NCCL process group is not in the process, else NULL.
char* ssl_dist_nccl_available() {
  return guarded([&] {
    symbol(kNcclOptionsCtor);
    symbol(kNcclGroupCtor);
  });
}

// An NCCL process group for CUDA tensors over the same store (under its own key prefix, as
// torch gives each backend of a group). NCCL's communicator is created on the first
// collective, on that tensor's GPU.
char* ssl_dist_nccl_new(void* store, int rank, int world, int64_t timeout_ms, void** out) {
  return guarded([&] {
    auto options_ctor = reinterpret_cast<NcclOptionsCtor>(symbol(kNcclOptionsCtor));
    auto group_ctor = reinterpret_cast<NcclGroupCtor>(symbol(kNcclGroupCtor));
    auto timeout = std::chrono::milliseconds(timeout_ms);
    auto opts = construct<c10d::Backend::Options>(
        kNcclOptionsBytes, [&](void* mem) { options_ctor(mem, false); });
    opts->timeout = timeout;
    opts->group_name = "0";
    opts->group_desc = "default_pg";
    c10::intrusive_ptr<c10d::Store> prefixed =
        c10::make_intrusive<c10d::PrefixStore>("nccl", static_cast<Store*>(store)->store);
    auto pg = construct<c10d::Backend>(
        kNcclGroupBytes, [&](void* mem) { group_ctor(mem, prefixed, rank, world, opts); });
    *out = new Group{pg, timeout};
  });
}

// Shuts the backend down first (NCCL joins its watchdog threads and warns otherwise); a
// failing shutdown is ignored, since nothing can be done about it at this point.
void ssl_dist_group_free(void* group) {
  auto* g = static_cast<Group*>(group);
  try {
    g->pg->shutdown();
  } catch (...) {
  }
  delete g;
}

// One tensor per call: c10d reads a list as one tensor per local device, not as a batch of
// tensors, so the Rust side loops (or flattens into buckets).
char* ssl_dist_all_reduce_sum(void* group, at::Tensor* tensor) {
  return guarded([&] {
    auto* g = static_cast<Group*>(group);
    std::vector<at::Tensor> v{*tensor};
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    opts.timeout = g->timeout;
    wait(g->pg->allreduce(v, opts), g->timeout);
  });
}

char* ssl_dist_broadcast(void* group, at::Tensor* tensor, int root) {
  return guarded([&] {
    auto* g = static_cast<Group*>(group);
    std::vector<at::Tensor> v{*tensor};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    opts.rootTensor = 0;
    opts.timeout = g->timeout;
    wait(g->pg->broadcast(v, opts), g->timeout);
  });
}

// outputs: world tensors shaped like input, filled in rank order.
char* ssl_dist_all_gather(void* group, at::Tensor* input, at::Tensor** outputs, int world) {
  return guarded([&] {
    auto* g = static_cast<Group*>(group);
    std::vector<at::Tensor> in{*input};
    std::vector<std::vector<at::Tensor>> out{tensors(outputs, world)};
    c10d::AllgatherOptions opts;
    opts.timeout = g->timeout;
    wait(g->pg->allgather(out, in, opts), g->timeout);
  });
}

char* ssl_dist_barrier(void* group) {
  return guarded([&] {
    auto* g = static_cast<Group*>(group);
    c10d::BarrierOptions opts;
    opts.timeout = g->timeout;
    wait(g->pg->barrier(opts), g->timeout);
  });
}

// Registers the Gloo group (and the NCCL one, if any) under `name` as a c10d::ProcessGroup, so
// that c10d's functional collectives (which GatherWithGrad runs, forward and backward) can
// find it by name. Host tensors go to Gloo; GPU tensors to NCCL when given, else
// to Gloo. The registry holds a weak reference: *out receives the owning handle, freed with
// ssl_dist_unregister.
char* ssl_dist_register(
    void* store,
    void* gloo,
    void* nccl,
    int rank,
    int world,
    const char* name,
    void** out) {
  return guarded([&] {
    auto pg = c10::make_intrusive<c10d::ProcessGroup>(static_cast<Store*>(store)->store, rank, world);
    auto cpu = static_cast<Group*>(gloo)->pg;
    pg->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO, cpu);
    if (nccl != nullptr) {
      pg->setBackend(
          c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::NCCL, static_cast<Group*>(nccl)->pg);
    } else {
      pg->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::GLOO, cpu);
    }
    pg->setDefaultBackend(c10d::ProcessGroup::BackendType::GLOO);
    c10d::register_process_group(std::string(name), pg);
    *out = new Registered{std::string(name), pg};
  });
}

void ssl_dist_unregister(void* registered) {
  auto* r = static_cast<Registered*>(registered);
  try {
    c10d::unregister_process_group(r->name);
  } catch (...) {
  }
  delete r;
}

// The inputs of all ranks concatenated along dim 0, in rank order, as a tensor on the autograd
// graph whose backward reduce-scatters (sums) the gradient over the ranks inside the backward
// pass (GatherWithGrad above). *out receives a new at::Tensor owned by the caller.
char* ssl_dist_all_gather_autograd(const char* name, int world, at::Tensor* input, at::Tensor** out) {
  return guarded([&] {
    at::Tensor result = GatherWithGrad::apply(*input, static_cast<int64_t>(world), std::string(name));
    *out = new at::Tensor(result);
  });
}

} // extern "C"
