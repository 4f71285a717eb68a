// SPDX-License-Identifier: MIT
//
// The DVK native addon: thin typed wrappers over what Node cannot do itself, the credentials
// of a Unix-socket peer and the ioctls of /dev/dvk (their ABI comes from the module's uAPI
// header, kmod/include/uapi/linux/dvk.h, included here and never copied). Policy stays in
// TypeScript; functions here return raw facts or throw errors carrying `code`.

#include <napi.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <linux/dvk.h>
#include <uv.h>

namespace {

// The errno's symbolic name ("ENOTTY"), which is what DvkError.code carries.
const char *ErrnoName(int err) {
  const char *name = strerrorname_np(err);
  return name ? name : "EIO";
}

Napi::Value ThrowErrno(Napi::Env env, int err, const char *what) {
  Napi::Error error = Napi::Error::New(env, std::string(what) + ": " + std::strerror(err));
  error.Set("code", Napi::String::New(env, ErrnoName(err)));
  error.Set("errno", Napi::Number::New(env, err));
  error.ThrowAsJavaScriptException();
  return env.Undefined();
}

// EMSGSIZE for a batch buffer too small for the next record; `needed` is the room it takes.
Napi::Value ThrowTooSmall(Napi::Env env, const char *what, uint32_t needed) {
  Napi::Error e = Napi::Error::New(env, std::string(what) + ": the buffer is too small");
  e.Set("code", Napi::String::New(env, "EMSGSIZE"));
  e.Set("errno", Napi::Number::New(env, EMSGSIZE));
  e.Set("needed", Napi::Number::New(env, needed));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

// peerCredentials(fd) -> { pid, uid, gid } of the process at the other end of a Unix socket,
// as the kernel recorded it at connect() time (SO_PEERCRED), so a client cannot lie about it.
Napi::Value PeerCredentials(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "peerCredentials(fd: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  struct ucred cred;
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return ThrowErrno(env, errno, "getsockopt(SO_PEERCRED)");
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("pid", Napi::Number::New(env, cred.pid));
  out.Set("uid", Napi::Number::New(env, cred.uid));
  out.Set("gid", Napi::Number::New(env, cred.gid));
  return out;
}

// --- /dev/dvk --------------------------------------------------------------------------------
//
// Each wrapper fills one uAPI structure from its arguments, makes one ioctl and returns what
// the kernel wrote, or throws with `code` = the errno name. Arguments arrive checked by the
// TypeScript backend (lib/kernel/); here only their JavaScript types are trusted.

bool CheckArgs(const Napi::CallbackInfo &info, size_t n, const char *usage) {
  if (info.Length() == n) return true;
  Napi::TypeError::New(info.Env(), usage).ThrowAsJavaScriptException();
  return false;
}

// Argument readers. A value of the wrong type throws a TypeError and reads as 0; every wrapper
// checks Failed() before its ioctl, so a bad argument never reaches the kernel.
void Mistyped(const Napi::Value &v, const char *want) {
  if (!v.Env().IsExceptionPending()) {
    Napi::TypeError::New(v.Env(), std::string("expected ") + want).ThrowAsJavaScriptException();
  }
}

bool Failed(Napi::Env env) { return env.IsExceptionPending(); }

uint32_t U32(const Napi::Value &v) {
  if (!v.IsNumber()) return Mistyped(v, "a number"), 0;
  return v.As<Napi::Number>().Uint32Value();
}

int32_t I32(const Napi::Value &v) {
  if (!v.IsNumber()) return Mistyped(v, "a number"), 0;
  return v.As<Napi::Number>().Int32Value();
}

uint64_t U64(const Napi::Value &v) {
  if (!v.IsBigInt()) return Mistyped(v, "a bigint"), 0;
  bool lossless = false;
  uint64_t n = v.As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) Mistyped(v, "a bigint in 0..2^64-1");
  return n;
}

// Points a message at a Uint8Array's bytes (the kernel reads or fills them during the call).
void SetPayload(struct dvk_msg *msg, const Napi::Value &v) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    Mistyped(v, "a Uint8Array");
    return;
  }
  Napi::Uint8Array bytes = v.As<Napi::Uint8Array>();
  msg->payload = reinterpret_cast<uintptr_t>(bytes.Data());
  msg->size = static_cast<uint32_t>(bytes.ByteLength());
}

Napi::Object MessageObject(Napi::Env env, const struct dvk_msg &m) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("peer", Napi::Number::New(env, m.peer));
  out.Set("peerGen", Napi::Number::New(env, m.peer_gen));
  out.Set("type", Napi::Number::New(env, m.type));
  out.Set("flags", Napi::Number::New(env, m.flags));
  out.Set("requestId", Napi::BigInt::New(env, static_cast<uint64_t>(m.request_id)));
  out.Set("size", Napi::Number::New(env, m.size));
  out.Set("bits", Napi::Number::New(env, m.bits));
  return out;
}

// An ioctl that a signal may interrupt: repeated with the same arguments, as SA_RESTART would
// (the deadline is absolute, and a sendrec the server holds resumes, see DVK_CALL_RESUME).
int Ioctl(int fd, unsigned long cmd, void *arg) {
  int ret;
  do {
    ret = ioctl(fd, cmd, arg);
  } while (ret != 0 && errno == EINTR);
  return ret;
}

// dvkVersion(fd) -> what DVK_IOC_VERSION reports for an open /dev/dvk.
Napi::Value DvkVersion(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!CheckArgs(info, 1, "dvkVersion(fd)")) return env.Undefined();
  struct dvk_version v = {};
  int fd = I32(info[0]);
  if (Failed(env)) return env.Undefined();
  if (ioctl(fd, DVK_IOC_VERSION, &v) != 0) {
    return ThrowErrno(env, errno, "ioctl(DVK_IOC_VERSION)");
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("abi", Napi::Number::New(env, v.abi));
  out.Set("maxPayload", Napi::Number::New(env, v.max_payload));
  out.Set("features", Napi::BigInt::New(env, static_cast<uint64_t>(v.features)));
  out.Set("queueLength", Napi::Number::New(env, v.queue_length));
  out.Set("queueBytes", Napi::Number::New(env, v.queue_bytes));
  return out;
}

// dcCreate(fd, id, slots, name, queueLength, queueBytes)
Napi::Value DcCreate(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!CheckArgs(info, 6, "dcCreate(fd, id, slots, name, queueLength, queueBytes)")) {
    return env.Undefined();
  }
  struct dvk_dc_config c = {};
  c.id = U32(info[1]);
  c.slots = U32(info[2]);
  if (!info[3].IsString()) Mistyped(info[3], "a DC name");
  std::string name = info[3].IsString() ? info[3].As<Napi::String>().Utf8Value() : "";
  std::strncpy(c.name, name.c_str(), sizeof(c.name));  // too long: no NUL, EINVAL
  c.queue_length = U32(info[4]);
  c.queue_bytes = U32(info[5]);
  if (Failed(env)) return env.Undefined();
  if (ioctl(I32(info[0]), DVK_IOC_DC_CREATE, &c) != 0) {
    return ThrowErrno(env, errno, "ioctl(DVK_IOC_DC_CREATE)");
  }
  return env.Undefined();
}

// dcDestroy(fd, id)
Napi::Value DcDestroy(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!CheckArgs(info, 2, "dcDestroy(fd, id)")) return env.Undefined();
  uint32_t id = U32(info[1]);
  if (Failed(env)) return env.Undefined();
  if (ioctl(I32(info[0]), DVK_IOC_DC_DESTROY, &id) != 0) {
    return ThrowErrno(env, errno, "ioctl(DVK_IOC_DC_DESTROY)");
  }
  return env.Undefined();
}

// bind(fd, dc: number | string, endpoint) -> { dc, generation }
Napi::Value Bind(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!CheckArgs(info, 3, "bind(fd, dc, endpoint)")) return env.Undefined();
  struct dvk_bind b = {};
  if (info[1].IsString()) {
    std::string name = info[1].As<Napi::String>().Utf8Value();
    std::strncpy(b.dc_name, name.c_str(), sizeof(b.dc_name));
    b.flags = DVK_BIND_BY_NAME;
  } else {
    b.dc = U32(info[1]);
  }
  b.endpoint = U32(info[2]);
  if (Failed(env)) return env.Undefined();
  // With a claims proxy the bind waits for the cluster; a signal restarts that wait.
  if (Ioctl(I32(info[0]), DVK_IOC_BIND, &b) != 0) {
    return ThrowErrno(env, errno, "ioctl(DVK_IOC_BIND)");
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("dc", Napi::Number::New(env, b.dc));
  out.Set("generation", Napi::Number::New(env, b.generation));
  return out;
}

// submit(fd, op, peer, peerGen, type, payload | null, from, fromGen, flags, bits) -> token
Napi::Value Submit(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!CheckArgs(info, 10,
                 "submit(fd, op, peer, peerGen, type, payload, from, fromGen, flags, bits)")) {
    return env.Undefined();
  }
  struct dvk_submit s = {};
  s.op = U32(info[1]);
  s.msg.peer = U32(info[2]);
  s.msg.peer_gen = U32(info[3]);
  s.msg.type = I32(info[4]);
  if (!info[5].IsNull()) SetPayload(&s.msg, info[5]);
  s.from = U32(info[6]);
  s.from_gen = U32(info[7]);
  s.flags = U32(info[8]);
  s.msg.bits = U32(info[9]);
  if (Failed(env)) return env.Undefined();
  if (ioctl(I32(info[0]), DVK_IOC_SUBMIT, &s) != 0) {
    return ThrowErrno(env, errno, "ioctl(DVK_IOC_SUBMIT)");
  }
  return Napi::Number::New(env, static_cast<double>(s.token));
}

// reap(fd, buffer) -> { count, size }: completion records, as the uAPI header lays them out,
// written to the start of `buffer`; count 0 when there are none. EMSGSIZE: the error's
// `needed` says how much room the next record takes.
Napi::Value Reap(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!CheckArgs(info, 2, "reap(fd, buffer)")) return env.Undefined();
  struct dvk_msg area = {};
  SetPayload(&area, info[1]);
  int fd = I32(info[0]);
  if (Failed(env)) return env.Undefined();
  struct dvk_reap r = {};
  r.buffer = area.payload;
  r.size = area.size;
  if (ioctl(fd, DVK_IOC_REAP, &r) != 0) {
    if (errno == EAGAIN) {
      r.count = r.size = 0;  // nothing (more) to reap: the usual end of a reap loop
    } else if (errno != EMSGSIZE) {
      return ThrowErrno(env, errno, "ioctl(DVK_IOC_REAP)");
    } else {
      return ThrowTooSmall(env, "ioctl(DVK_IOC_REAP)", r.size);
    }
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("count", Napi::Number::New(env, r.count));
  out.Set("size", Napi::Number::New(env, r.size));
  return out;
}

// cancel(fd, token) -> true if undone, false if it had completed (its completion follows).
Napi::Value Cancel(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!CheckArgs(info, 2, "cancel(fd, token)")) return env.Undefined();
  struct dvk_cancel c = {};
  if (!info[1].IsNumber()) Mistyped(info[1], "a token");
  else c.token = static_cast<uint64_t>(info[1].As<Napi::Number>().Int64Value());
  if (Failed(env)) return env.Undefined();
  if (ioctl(I32(info[0]), DVK_IOC_CANCEL, &c) != 0) {
    if (errno == EALREADY) return Napi::Boolean::New(env, false);
    return ThrowErrno(env, errno, "ioctl(DVK_IOC_CANCEL)");
  }
  return Napi::Boolean::New(env, true);
}

// receiveSync(fd, from, fromGen, deadline: bigint, nonblock, buffer) -> message header; the
// payload lands in `buffer`. Blocks the calling thread (and its event loop) until it returns.
Napi::Value ReceiveSync(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!CheckArgs(info, 6, "receiveSync(fd, from, fromGen, deadline, nonblock, buffer)")) {
    return env.Undefined();
  }
  struct dvk_receive r = {};
  r.from = U32(info[1]);
  r.from_gen = U32(info[2]);
  r.deadline_ns = U64(info[3]);
  r.flags = info[4].ToBoolean().Value() ? DVK_CALL_NONBLOCK : 0;
  SetPayload(&r.msg, info[5]);
  if (Failed(env)) return env.Undefined();
  if (Ioctl(I32(info[0]), DVK_IOC_RECEIVE, &r) != 0) {
    return ThrowErrno(env, errno, "ioctl(DVK_IOC_RECEIVE)");
  }
  return MessageObject(env, r.msg);
}

// sendrecSync(fd, peer, peerGen, type, payload, deadline: bigint, replyBuffer) -> the reply's
// header; its payload lands in `replyBuffer`. Blocks the calling thread until it returns.
Napi::Value SendrecSync(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!CheckArgs(info, 7, "sendrecSync(fd, peer, peerGen, type, payload, deadline, replyBuffer)")) {
    return env.Undefined();
  }
  struct dvk_sendrec s = {};
  s.request.peer = U32(info[1]);
  s.request.peer_gen = U32(info[2]);
  s.request.type = I32(info[3]);
  SetPayload(&s.request, info[4]);
  s.deadline_ns = U64(info[5]);
  SetPayload(&s.reply, info[6]);
  if (Failed(env)) return env.Undefined();
  if (Ioctl(I32(info[0]), DVK_IOC_SENDREC, &s) != 0) {
    return ThrowErrno(env, errno, "ioctl(DVK_IOC_SENDREC)");
  }
  return MessageObject(env, s.reply);
}

// reply(fd, peer, peerGen, requestId: bigint, type, payload)
Napi::Value Reply(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!CheckArgs(info, 6, "reply(fd, peer, peerGen, requestId, type, payload)")) {
    return env.Undefined();
  }
  struct dvk_reply r = {};
  r.msg.peer = U32(info[1]);
  r.msg.peer_gen = U32(info[2]);
  r.msg.request_id = U64(info[3]);
  r.msg.type = I32(info[4]);
  SetPayload(&r.msg, info[5]);
  if (Failed(env)) return env.Undefined();
  if (ioctl(I32(info[0]), DVK_IOC_REPLY, &r) != 0) {
    return ThrowErrno(env, errno, "ioctl(DVK_IOC_REPLY)");
  }
  return env.Undefined();
}

// --- the proxy role: the node agent's file -------------------------------------------------

// proxyAttach(fd, node, flags): makes the file the node's proxy.
Napi::Value ProxyAttach(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!CheckArgs(info, 3, "proxyAttach(fd, node, flags)")) return env.Undefined();
  struct dvk_proxy_attach a = {};
  a.node = U32(info[1]);
  a.flags = U32(info[2]);
  if (Failed(env)) return env.Undefined();
  if (ioctl(I32(info[0]), DVK_IOC_PROXY_ATTACH, &a) != 0) {
    return ThrowErrno(env, errno, "ioctl(DVK_IOC_PROXY_ATTACH)");
  }
  return env.Undefined();
}

// remoteAdd(fd, dc, endpoint, generation, node) and remoteDel(fd, dc, endpoint, generation,
// flags): register and unregister an endpoint of another node.
Napi::Value Remote(const Napi::CallbackInfo &info, unsigned long cmd, const char *usage) {
  Napi::Env env = info.Env();
  if (!CheckArgs(info, 5, usage)) return env.Undefined();
  struct dvk_remote r = {};
  r.dc = U32(info[1]);
  r.endpoint = U32(info[2]);
  r.generation = U32(info[3]);
  if (cmd == DVK_IOC_REMOTE_ADD) r.node = U32(info[4]);
  else r.flags = U32(info[4]);
  if (Failed(env)) return env.Undefined();
  if (ioctl(I32(info[0]), cmd, &r) != 0) return ThrowErrno(env, errno, usage);
  return env.Undefined();
}

Napi::Value RemoteAdd(const Napi::CallbackInfo &info) {
  return Remote(info, DVK_IOC_REMOTE_ADD, "remoteAdd(fd, dc, endpoint, generation, node)");
}

Napi::Value RemoteDel(const Napi::CallbackInfo &info) {
  return Remote(info, DVK_IOC_REMOTE_DEL, "remoteDel(fd, dc, endpoint, generation, flags)");
}

// proxyDrain(fd, buffer) -> { count, size }: the records waiting for the proxy, written to the
// start of `buffer`, without waiting; count 0 when there are none. EMSGSIZE carries `needed`.
Napi::Value ProxyDrain(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!CheckArgs(info, 2, "proxyDrain(fd, buffer)")) return env.Undefined();
  struct dvk_msg area = {};
  SetPayload(&area, info[1]);
  int fd = I32(info[0]);
  if (Failed(env)) return env.Undefined();
  struct dvk_proxy_batch b = {};
  b.buffer = area.payload;
  b.size = area.size;
  b.flags = DVK_CALL_NONBLOCK;
  if (ioctl(fd, DVK_IOC_PROXY_DRAIN, &b) != 0) {
    if (errno == EAGAIN) {
      b.count = b.size = 0;
    } else if (errno == EMSGSIZE) {
      return ThrowTooSmall(env, "ioctl(DVK_IOC_PROXY_DRAIN)", b.size);
    } else {
      return ThrowErrno(env, errno, "ioctl(DVK_IOC_PROXY_DRAIN)");
    }
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("count", Napi::Number::New(env, b.count));
  out.Set("size", Napi::Number::New(env, b.size));
  return out;
}

// proxyInject(fd, records: Uint8Array) -> { count, size, error }: how many records and bytes
// the kernel took, and why it stopped (an errno name, or null if it took them all).
Napi::Value ProxyInject(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!CheckArgs(info, 2, "proxyInject(fd, records)")) return env.Undefined();
  struct dvk_msg area = {};
  SetPayload(&area, info[1]);
  int fd = I32(info[0]);
  if (Failed(env)) return env.Undefined();
  struct dvk_proxy_batch b = {};
  b.buffer = area.payload;
  b.size = area.size;
  if (ioctl(fd, DVK_IOC_PROXY_INJECT, &b) != 0) {
    return ThrowErrno(env, errno, "ioctl(DVK_IOC_PROXY_INJECT)");
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("count", Napi::Number::New(env, b.count));
  out.Set("size", Napi::Number::New(env, b.size));
  out.Set("error", b.error ? Napi::Value(Napi::String::New(env, ErrnoName(-b.error)))
                           : env.Null());
  return out;
}

// Poller: owns an open /dev/dvk file and calls back on the event loop of the thread that made
// it (main thread or worker, through napi_get_uv_event_loop, never uv_default_loop) whenever
// the file is readable: completions to reap. No thread pool. close() closes the file, and so
// does the thread's exit (an env cleanup hook): a worker that ends without closing its
// endpoints still unbinds them, since file descriptors outlive the thread that opened them.
class Poller : public Napi::ObjectWrap<Poller> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Poller",
                       {InstanceMethod("start", &Poller::Start),
                        InstanceMethod("stop", &Poller::Stop),
                        InstanceMethod("close", &Poller::Close)});
  }

  explicit Poller(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Poller>(info) {
    Napi::Env env = info.Env();
    if (info.Length() != 2 || !info[0].IsNumber() || !info[1].IsFunction()) {
      Napi::TypeError::New(env, "new Poller(fd, onReadable)").ThrowAsJavaScriptException();
      return;
    }
    uv_loop_t *loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
      Napi::Error::New(env, "no event loop").ThrowAsJavaScriptException();
      return;
    }
    callback_ = Napi::Persistent(info[1].As<Napi::Function>());
    fd_ = I32(info[0]);
    handle_ = new uv_poll_t;
    int err = uv_poll_init(loop, handle_, fd_);
    if (err != 0) {
      delete handle_;
      handle_ = nullptr;
      ThrowErrno(env, -err, "uv_poll_init");
      return;
    }
    handle_->data = this;
    env_ = env;
    napi_add_env_cleanup_hook(env, CleanupHook, this);
  }

  ~Poller() override { Release(); }

 private:
  // Raw N-API calls with their statuses checked: while a worker is being terminated, JavaScript
  // can no longer run, and the C++ wrappers would abort the process trying to report that.
  static void OnPoll(uv_poll_t *handle, int status, int) {
    Poller *self = static_cast<Poller *>(handle->data);
    if (!self) return;
    napi_env env = self->env_;
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) != napi_ok) return;
    napi_value fn, recv, arg;
    if (napi_get_reference_value(env, static_cast<napi_ref>(self->callback_), &fn) == napi_ok && fn &&
        napi_get_global(env, &recv) == napi_ok &&
        napi_create_int32(env, status, &arg) == napi_ok) {
      napi_value result;
      if (napi_make_callback(env, nullptr, recv, fn, 1, &arg, &result) == napi_pending_exception) {
        // A throw in the callback is the process's uncaught exception, as from any callback.
        napi_value err;
        if (napi_get_and_clear_last_exception(env, &err) == napi_ok) napi_fatal_exception(env, err);
      }
    }
    napi_close_handle_scope(env, scope);
  }

  static void OnClose(uv_handle_t *handle) { delete reinterpret_cast<uv_poll_t *>(handle); }

  static void CleanupHook(void *arg) { static_cast<Poller *>(arg)->Release(); }

  // Stops and closes the handle, then the file, once; libuv frees the handle after its close
  // callback.
  void Release() {
    if (!handle_) return;
    uv_poll_stop(handle_);
    handle_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t *>(handle_), OnClose);
    handle_ = nullptr;
    close(fd_);
    fd_ = -1;
    napi_remove_env_cleanup_hook(env_, CleanupHook, this);
  }

  Napi::Value Start(const Napi::CallbackInfo &info) {
    if (handle_) uv_poll_start(handle_, UV_READABLE, OnPoll);
    return info.Env().Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo &info) {
    if (handle_) uv_poll_stop(handle_);
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo &info) {
    Release();
    return info.Env().Undefined();
  }

  Napi::FunctionReference callback_;
  int fd_ = -1;
  uv_poll_t *handle_ = nullptr;
  napi_env env_ = nullptr;
};

// The ABI this build was compiled against, for the kernel backend to compare with the module.
Napi::Object Abi(Napi::Env env) {
  Napi::Object abi = Napi::Object::New(env);
  abi.Set("version", Napi::Number::New(env, DVK_ABI_VERSION));
  abi.Set("nameMax", Napi::Number::New(env, DVK_NAME_MAX));
  abi.Set("slotsMax", Napi::Number::New(env, DVK_SLOTS_MAX));
  abi.Set("any", Napi::Number::New(env, DVK_ANY));
  abi.Set("parkedMax", Napi::Number::New(env, DVK_PARKED_MAX));
  abi.Set("asyncMax", Napi::Number::New(env, DVK_ASYNC_MAX));
  abi.Set("featureAsync", Napi::BigInt::New(env, static_cast<uint64_t>(DVK_FEATURE_ASYNC)));
  abi.Set("completionSize", Napi::Number::New(env, sizeof(struct dvk_completion)));
  Napi::Object ops = Napi::Object::New(env);
  ops.Set("send", Napi::Number::New(env, DVK_OP_SEND));
  ops.Set("receive", Napi::Number::New(env, DVK_OP_RECEIVE));
  ops.Set("sendrec", Napi::Number::New(env, DVK_OP_SENDREC));
  ops.Set("notify", Napi::Number::New(env, DVK_OP_NOTIFY));
  abi.Set("ops", ops);
  abi.Set("callNonblock", Napi::Number::New(env, DVK_CALL_NONBLOCK));
  Napi::Object flags = Napi::Object::New(env);
  flags.Set("request", Napi::Number::New(env, DVK_MSG_REQUEST));
  flags.Set("notify", Napi::Number::New(env, DVK_MSG_NOTIFY));
  flags.Set("reply", Napi::Number::New(env, DVK_MSG_REPLY));
  abi.Set("messageFlags", flags);
  Napi::Object proxy = Napi::Object::New(env);
  proxy.Set("recordSize", Napi::Number::New(env, sizeof(struct dvk_proxy_msg)));
  proxy.Set("claims", Napi::Number::New(env, DVK_PROXY_CLAIMS));
  proxy.Set("verdicts", Napi::Number::New(env, DVK_PROXY_VERDICTS));
  proxy.Set("featureClaims", Napi::BigInt::New(env, static_cast<uint64_t>(DVK_FEATURE_CLAIMS)));
  proxy.Set("featureVerdicts",
            Napi::BigInt::New(env, static_cast<uint64_t>(DVK_FEATURE_VERDICTS)));
  proxy.Set("nodeDown", Napi::Number::New(env, DVK_REMOTE_NODE_DOWN));
  proxy.Set("nonblock", Napi::Number::New(env, DVK_PROXY_NONBLOCK));
  Napi::Object kinds = Napi::Object::New(env);
  kinds.Set("message", Napi::Number::New(env, DVK_PROXY_MESSAGE));
  kinds.Set("request", Napi::Number::New(env, DVK_PROXY_REQUEST));
  kinds.Set("reply", Napi::Number::New(env, DVK_PROXY_REPLY));
  kinds.Set("notify", Napi::Number::New(env, DVK_PROXY_NOTIFY));
  kinds.Set("fail", Napi::Number::New(env, DVK_PROXY_FAIL));
  kinds.Set("claim", Napi::Number::New(env, DVK_PROXY_CLAIM));
  kinds.Set("bound", Napi::Number::New(env, DVK_PROXY_BOUND));
  kinds.Set("unbound", Napi::Number::New(env, DVK_PROXY_UNBOUND));
  kinds.Set("claimed", Napi::Number::New(env, DVK_PROXY_CLAIMED));
  kinds.Set("sent", Napi::Number::New(env, DVK_PROXY_SENT));
  kinds.Set("cancel", Napi::Number::New(env, DVK_PROXY_CANCEL));
  proxy.Set("kinds", kinds);
  abi.Set("proxy", proxy);
  return abi;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("peerCredentials", Napi::Function::New(env, PeerCredentials, "peerCredentials"));
  exports.Set("dvkVersion", Napi::Function::New(env, DvkVersion, "dvkVersion"));
  exports.Set("dcCreate", Napi::Function::New(env, DcCreate, "dcCreate"));
  exports.Set("dcDestroy", Napi::Function::New(env, DcDestroy, "dcDestroy"));
  exports.Set("bind", Napi::Function::New(env, Bind, "bind"));
  exports.Set("submit", Napi::Function::New(env, Submit, "submit"));
  exports.Set("reap", Napi::Function::New(env, Reap, "reap"));
  exports.Set("cancel", Napi::Function::New(env, Cancel, "cancel"));
  exports.Set("receiveSync", Napi::Function::New(env, ReceiveSync, "receiveSync"));
  exports.Set("sendrecSync", Napi::Function::New(env, SendrecSync, "sendrecSync"));
  exports.Set("reply", Napi::Function::New(env, Reply, "reply"));
  exports.Set("proxyAttach", Napi::Function::New(env, ProxyAttach, "proxyAttach"));
  exports.Set("remoteAdd", Napi::Function::New(env, RemoteAdd, "remoteAdd"));
  exports.Set("remoteDel", Napi::Function::New(env, RemoteDel, "remoteDel"));
  exports.Set("proxyDrain", Napi::Function::New(env, ProxyDrain, "proxyDrain"));
  exports.Set("proxyInject", Napi::Function::New(env, ProxyInject, "proxyInject"));
  exports.Set("Poller", Poller::Define(env));
  exports.Set("abi", Abi(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(dvk, Init)
