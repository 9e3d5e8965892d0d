// FlatUnit: a unit's parameters become views of its own flat buffer, and the
// transitions of its parameter state are checked.

#include "zero/flat_unit.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <gtest/gtest.h>

namespace zerotrain::zero {
namespace {

TEST(FlatUnit, ParametersBecomeViewsOfTheUnitsOwnBuffer) {
  at::Tensor a = at::arange(6, at::kFloat).reshape({2, 3}).requires_grad_();
  at::Tensor b = at::full({3}, 7.0f).requires_grad_();
  const ModelLayout m = ModelLayout::build({{0, 1}}, {6, 3}, 2, /*sharded=*/true, 4);
  FlatUnit u(0, "blocks.0", m.unit(0), {a, b}, /*full_grads=*/true);
  EXPECT_EQ(u.flat_params().numel(), 16);  // 6 at 0, 3 at 8 -> 11 -> padded to 2 * 4 * 2
  EXPECT_EQ(a.data_ptr<float>(), u.flat_params().data_ptr<float>());
  EXPECT_EQ(b.data_ptr<float>(), u.flat_params().data_ptr<float>() + 8);
  EXPECT_TRUE(a.equal(at::arange(6, at::kFloat).reshape({2, 3})));
  EXPECT_EQ(b.grad().data_ptr<float>(), u.flat_grads().data_ptr<float>() + 8);
}

TEST(FlatUnit, AForwardWhileTheUnitIsGatheredIsAnErrorNamingIt) {
  at::Tensor a = at::ones({5}).requires_grad_();
  const ModelLayout m = ModelLayout::build({{0}}, {5}, 1, /*sharded=*/false, 1);
  FlatUnit u(0, "encoder.layer3", m.unit(0), {a}, /*full_grads=*/false);
  u.check_readable("ran its forward");
  u.begin_gather();
  try {
    u.check_readable("ran its forward");
    ADD_FAILURE() << "reading a unit while it is gathered must fail";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("unit 'encoder.layer3' ran its forward while its parameters are being "
                                         "gathered"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(u.begin_gather(), c10::Error);
  u.end_gather();
  EXPECT_THROW(u.end_gather(), c10::Error);
  u.check_readable("ran its forward");
}

}  // namespace
}  // namespace zerotrain::zero
