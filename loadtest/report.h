// The load test's report: a human-readable table and a JSON document of the same numbers.
#pragma once

#include <string>

#include "loadtest/load_generator.h"

namespace deltaserve::loadtest {

std::string FormatTable(const LoadConfig& config, const LoadResult& result);
std::string FormatJson(const LoadConfig& config, const LoadResult& result);

}  // namespace deltaserve::loadtest
