// The two 1.3B reference configurations of MODEL_SPEC.md section 4 as the CUDA benchmarks build
// them: gdn2_1.3B (the ModelConfig defaults) and swa_gdn2_1.3B (GDN-2 on even layers, SWA on
// odd, MLP 6784); vocabulary 32000 without padding.
#pragma once

#include "engine/model_config.h"

namespace deltaserve::bench {

inline ModelConfig ReferenceConfig(bool hybrid) {
  ModelConfig c;
  c.vocab_size = 32000;
  c.padded_vocab_size = 32000;
  if (hybrid) {
    c.gdn2_per_layer = 2;
    c.intermediate_size = 6784;
  }
  return c;
}

}  // namespace deltaserve::bench
