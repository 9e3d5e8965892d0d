// See torch_format.h.

#include "checkpoint/torch_format.h"

#include <c10/util/Exception.h>
#include <caffe2/serialize/inline_container.h>

#include <cstring>

namespace zerotrain::ckpt {

namespace {

// The storage class torch.load maps back to a dtype.
const char* storage_class(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "FloatStorage";
    case at::kBFloat16: return "BFloat16Storage";
    case at::kHalf: return "HalfStorage";
    case at::kDouble: return "DoubleStorage";
    case at::kLong: return "LongStorage";
    case at::kInt: return "IntStorage";
    case at::kShort: return "ShortStorage";
    case at::kChar: return "CharStorage";
    case at::kByte: return "ByteStorage";
    case at::kBool: return "BoolStorage";
    default: TORCH_CHECK(false, "zerotrain: cannot write a ", t, " tensor in torch format");
  }
}

// Pickle protocol 2 opcodes (Lib/pickle.py).
class Pickle {
 public:
  void proto() { bytes_ += "\x80\x02"; }
  void op(char c) { bytes_ += c; }
  void mark() { op('('); }
  void tuple() { op('t'); }
  void unicode(const std::string& s) {
    op('X');
    u32(static_cast<uint32_t>(s.size()));
    bytes_ += s;
  }
  void global(const std::string& module, const std::string& name) {
    op('c');
    bytes_ += module + "\n" + name + "\n";
  }
  void integer(int64_t v) {
    if (v >= 0 && v < 256) {
      op('K');
      bytes_ += static_cast<char>(v);
    } else if (v >= 0 && v < 65536) {
      op('M');
      bytes_ += static_cast<char>(v & 0xff);
      bytes_ += static_cast<char>(v >> 8);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      op('J');
      u32(static_cast<uint32_t>(static_cast<int32_t>(v)));
    } else {
      op('\x8a');  // LONG1: little-endian two's complement
      bytes_ += static_cast<char>(8);
      for (int i = 0; i < 8; ++i) bytes_ += static_cast<char>((static_cast<uint64_t>(v) >> (8 * i)) & 0xff);
    }
  }
  void int_tuple(const std::vector<int64_t>& v) {
    mark();
    for (int64_t x : v) integer(x);
    tuple();
  }
  const std::string& bytes() const { return bytes_; }

 private:
  void u32(uint32_t v) {
    for (int i = 0; i < 4; ++i) bytes_ += static_cast<char>((v >> (8 * i)) & 0xff);
  }
  std::string bytes_;
};

}  // namespace

TorchStateDictWriter::TorchStateDictWriter(std::string path) : file_(std::move(path)) {
  zip_ = std::make_unique<caffe2::serialize::PyTorchStreamWriter>(
      [this](const void* data, size_t n) -> size_t {
        file_.write(data, n);
        return n;
      });
}

TorchStateDictWriter::~TorchStateDictWriter() = default;

void TorchStateDictWriter::add(const std::string& name, const at::Tensor& t) {
  storage_class(t.scalar_type());  // rejects dtypes torch.load could not map back
  at::Tensor c = t.device().is_cpu() ? t.contiguous() : t.cpu().contiguous();
  const std::string key = std::to_string(entries_.size());
  zip_->writeRecord("data/" + key, c.data_ptr(), c.nbytes());
  entries_.push_back({name, c.scalar_type(), c.sizes().vec(), c.numel()});
}

uint64_t TorchStateDictWriter::finish() {
  Pickle p;
  p.proto();
  p.op('}');  // EMPTY_DICT
  p.mark();
  for (size_t i = 0; i < entries_.size(); ++i) {
    const Entry& e = entries_[i];
    p.unicode(e.name);
    p.global("torch._utils", "_rebuild_tensor_v2");
    p.mark();
    p.mark();  // persistent id: ('storage', storage class, key, location, numel)
    p.unicode("storage");
    p.global("torch", storage_class(e.dtype));
    p.unicode(std::to_string(i));
    p.unicode("cpu");
    p.integer(e.numel);
    p.tuple();
    p.op('Q');  // BINPERSID
    p.integer(0);  // storage offset
    p.int_tuple(e.shape);
    std::vector<int64_t> stride(e.shape.size(), 1);
    for (size_t d = e.shape.size(); d-- > 1;) stride[d - 1] = stride[d] * std::max<int64_t>(e.shape[d], 1);
    p.int_tuple(stride);
    p.op('\x89');  // NEWFALSE: requires_grad
    p.global("collections", "OrderedDict");
    p.op(')');  // EMPTY_TUPLE
    p.op('R');  // OrderedDict()
    p.tuple();
    p.op('R');  // _rebuild_tensor_v2(*args)
  }
  p.op('u');  // SETITEMS
  p.op('.');  // STOP
  zip_->writeRecord("data.pkl", p.bytes().data(), p.bytes().size());
  static const char kLittle[] = "little";
  zip_->writeRecord("byteorder", kLittle, std::strlen(kLittle));
  zip_->writeEndOfFile();
  const uint64_t bytes = file_.bytes_written();
  file_.sync_and_close();
  return bytes;
}

}  // namespace zerotrain::ckpt
