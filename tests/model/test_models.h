// Test helpers: writing safetensors files and random model directories from C++, so model tests
// can build exactly the (good or broken) files they need without other tools.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/model_config.h"

namespace deltaserve::testing {

struct RawTensor {
  std::string name;
  std::string dtype;  // "F32", "BF16", "F16" or anything (for bad files)
  std::vector<int64_t> shape;
  std::vector<unsigned char> bytes;
};

// Serialises tensors as a safetensors file (contiguous, in the given order).
std::string SafetensorsBytes(const std::vector<RawTensor>& tensors);
void WriteFile(const std::string& path, const std::string& bytes);
std::string ReadFile(const std::string& path);

// (name, shape) of every tensor a config implies (MODEL_SPEC.md section 5), in file order.
std::vector<std::pair<std::string, std::vector<int64_t>>> TensorShapes(const ModelConfig& c);

// Random weights with trained-like ranges; F32 or BF16 ("F32" / "BF16").
std::vector<RawTensor> RandomTensors(const ModelConfig& c, uint64_t seed,
                                     const std::string& dtype = "F32");

// Writes config.json and model.safetensors into `dir` (created).
void WriteModelDir(const std::string& dir, const ModelConfig& c,
                   const std::vector<RawTensor>& tensors);

// A fresh empty directory <build>/tests/model/tmp/<name>; names must be unique per test.
std::string MakeTempDir(const std::string& name);

// Small configs for tests: pure GDN-2 (grouped value heads) and hybrid (GQA SWA, window 16).
ModelConfig SmallPureConfig();
ModelConfig SmallHybridConfig();

// ||a - b|| / ||b|| in double.
double RelativeError(const std::vector<float>& a, const std::vector<double>& b);
double RelativeError(const std::vector<float>& a, const std::vector<float>& b);

}  // namespace deltaserve::testing
