// SPDX-License-Identifier: MIT
//
// The DVK native addon. For now it carries what the userspace agent cannot get from Node:
// the credentials of a Unix-socket peer. The /dev/dvk bindings join it with the kernel module.
// Policy stays in TypeScript; functions here return raw facts or throw errors carrying `code`.

#include <napi.h>

#include <cerrno>
#include <cstring>
#include <sys/socket.h>
#include <sys/types.h>

namespace {

const char *ErrnoName(int err) {
  switch (err) {
    case EBADF: return "EBADF";
    case ENOTSOCK: return "ENOTSOCK";
    case EINVAL: return "EINVAL";
    case ENOPROTOOPT: return "ENOPROTOOPT";
    default: return "EIO";
  }
}

Napi::Value ThrowErrno(Napi::Env env, int err, const char *what) {
  Napi::Error error = Napi::Error::New(env, std::string(what) + ": " + std::strerror(err));
  error.Set("code", Napi::String::New(env, ErrnoName(err)));
  error.Set("errno", Napi::Number::New(env, err));
  error.ThrowAsJavaScriptException();
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

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("peerCredentials", Napi::Function::New(env, PeerCredentials, "peerCredentials"));
  return exports;
}

}  // namespace

NODE_API_MODULE(dvk, Init)
