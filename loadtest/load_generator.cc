// RunLoad: closed- and open-loop drivers over the synchronous gRPC client (see load_generator.h).
#include "loadtest/load_generator.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "deltaserve/v1/deltaserve.grpc.pb.h"
#include "grpcpp/client_context.h"

namespace deltaserve::loadtest {
namespace {

using SteadyClock = std::chrono::steady_clock;

double Seconds(SteadyClock::duration d) { return std::chrono::duration<double>(d).count(); }

const char* CodeName(grpc::StatusCode code) {
  static const char* const kNames[] = {
      "OK",           "CANCELLED",          "UNKNOWN",      "INVALID_ARGUMENT",
      "DEADLINE_EXCEEDED", "NOT_FOUND",     "ALREADY_EXISTS", "PERMISSION_DENIED",
      "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
      "UNIMPLEMENTED", "INTERNAL",          "UNAVAILABLE",  "DATA_LOSS",
      "UNAUTHENTICATED"};
  const int c = static_cast<int>(code);
  return c >= 0 && c < 17 ? kNames[c] : "UNKNOWN";
}

// What one worker measured.
struct WorkerStats {
  int64_t ok = 0;
  int64_t failed = 0;
  std::map<std::string, int64_t> errors;
  std::string first_error;
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  LatencySamples ttft, itl, e2e;
};

class Worker {
 public:
  Worker(v1::DeltaServe::Stub* stub, const LoadConfig& config, int vocab_size, uint64_t seed)
      : stub_(stub), config_(config), vocab_size_(vocab_size), rng_(seed) {}

  // Runs one request whose latencies count from `start`.
  void RunOne(SteadyClock::time_point start) {
    v1::GenerateRequest request;
    const int64_t prompt_len = config_.prompt_len.Sample(rng_);
    std::uniform_int_distribution<int32_t> token(0, vocab_size_ - 1);
    for (int64_t i = 0; i < prompt_len; ++i) request.mutable_token_ids()->add_ids(token(rng_));
    request.mutable_sampling()->set_temperature(config_.temperature);
    request.mutable_sampling()->set_seed(rng_());
    request.mutable_stopping()->set_max_new_tokens(
        static_cast<int32_t>(config_.output_len.Sample(rng_)));
    request.mutable_stopping()->set_ignore_eos(true);

    grpc::ClientContext context;
    context.set_deadline(SteadyToSystem(SteadyClock::now()) +
                         std::chrono::milliseconds(
                             static_cast<int64_t>(config_.request_timeout_seconds * 1000)));
    if (!config_.api_key.empty()) {
      context.AddMetadata("authorization", absl::StrCat("Bearer ", config_.api_key));
    }
    std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader =
        stub_->Generate(&context, request);
    v1::GenerateResponse msg;
    std::optional<SteadyClock::time_point> last_token;
    LatencySamples ttft, itl;
    int64_t tokens = 0;
    int64_t prompt_tokens = 0;
    while (reader->Read(&msg)) {
      const auto now = SteadyClock::now();
      const int n = msg.token_ids_size();
      if (n > 0) {
        if (!last_token.has_value()) {
          ttft.Add(Seconds(now - start));
          for (int i = 1; i < n; ++i) itl.Add(0);
        } else {
          const double gap = Seconds(now - *last_token) / n;
          for (int i = 0; i < n; ++i) itl.Add(gap);
        }
        last_token = now;
        tokens += n;
      }
      if (msg.has_finished()) prompt_tokens = msg.finished().usage().prompt_tokens();
    }
    const grpc::Status status = reader->Finish();
    const auto end = SteadyClock::now();
    if (!status.ok()) {
      ++stats_.failed;
      ++stats_.errors[CodeName(status.error_code())];
      if (stats_.first_error.empty()) {
        stats_.first_error = absl::StrCat(CodeName(status.error_code()), ": ",
                                          status.error_message());
      }
      return;
    }
    ++stats_.ok;
    stats_.generated_tokens += tokens;
    stats_.prompt_tokens += prompt_tokens;
    stats_.ttft.Merge(ttft);
    stats_.itl.Merge(itl);
    stats_.e2e.Add(Seconds(end - start));
  }

  WorkerStats& stats() { return stats_; }

 private:
  static std::chrono::system_clock::time_point SteadyToSystem(SteadyClock::time_point t) {
    return std::chrono::system_clock::now() +
           std::chrono::duration_cast<std::chrono::system_clock::duration>(t - SteadyClock::now());
  }

  v1::DeltaServe::Stub* stub_;
  const LoadConfig& config_;
  int vocab_size_;
  std::mt19937_64 rng_;
  WorkerStats stats_;
};

// Open-loop arrivals waiting for a worker.
class ArrivalQueue {
 public:
  void Push(SteadyClock::time_point t) {
    std::lock_guard<std::mutex> lock(mu_);
    q_.push_back(t);
    cv_.notify_one();
  }
  void Close() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    cv_.notify_all();
  }
  // False once closed and empty.
  bool Pop(SteadyClock::time_point* t) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return closed_ || !q_.empty(); });
    if (q_.empty()) return false;
    *t = q_.front();
    q_.pop_front();
    return true;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<SteadyClock::time_point> q_;
  bool closed_ = false;
};

}  // namespace

absl::StatusOr<LoadResult> RunLoad(std::shared_ptr<grpc::Channel> channel,
                                   const LoadConfig& config) {
  auto stub = v1::DeltaServe::NewStub(channel);
  v1::ModelInfo info;
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    if (!config.api_key.empty()) {
      context.AddMetadata("authorization", absl::StrCat("Bearer ", config.api_key));
    }
    const grpc::Status s = stub->GetModelInfo(&context, v1::GetModelInfoRequest(), &info);
    if (!s.ok()) {
      return absl::UnavailableError(
          absl::StrCat("GetModelInfo failed: ", CodeName(s.error_code()), ": ", s.error_message()));
    }
  }
  if (config.prompt_len.max() > info.max_prompt_tokens()) {
    return absl::InvalidArgumentError(absl::StrCat("--prompt-len can reach ", config.prompt_len.max(),
                                                   " tokens; the server allows ",
                                                   info.max_prompt_tokens()));
  }
  if (config.output_len.max() > info.max_new_tokens_cap()) {
    return absl::InvalidArgumentError(absl::StrCat("--output-len can reach ", config.output_len.max(),
                                                   " tokens; the server allows ",
                                                   info.max_new_tokens_cap()));
  }

  const int num_workers = config.mode == "closed" ? config.concurrency : config.max_in_flight;
  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < num_workers; ++i) {
    workers.push_back(std::make_unique<Worker>(stub.get(), config, info.vocab_size(),
                                               config.seed * 1000003 + i));
  }
  const auto start = SteadyClock::now();
  const auto end = start + std::chrono::microseconds(
                               static_cast<int64_t>(config.duration_seconds * 1e6));
  std::vector<std::thread> threads;
  if (config.mode == "closed") {
    for (auto& w : workers) {
      threads.emplace_back([&w, end] {
        while (SteadyClock::now() < end) w->RunOne(SteadyClock::now());
      });
    }
  } else {
    ArrivalQueue queue;
    for (auto& w : workers) {
      threads.emplace_back([&w, &queue] {
        SteadyClock::time_point t;
        while (queue.Pop(&t)) w->RunOne(t);
      });
    }
    std::mt19937_64 rng(config.seed);
    std::exponential_distribution<double> gap(config.rate);
    auto next = start;
    while (true) {
      next += std::chrono::duration_cast<SteadyClock::duration>(
          std::chrono::duration<double>(gap(rng)));
      if (next >= end) break;
      std::this_thread::sleep_until(next);
      queue.Push(next);
    }
    queue.Close();
    for (auto& t : threads) t.join();
    threads.clear();
  }
  for (auto& t : threads) t.join();

  LoadResult r;
  r.mode = config.mode;
  r.wall_seconds = Seconds(SteadyClock::now() - start);
  r.vocab_size = info.vocab_size();
  r.model = info.model();
  LatencySamples ttft, itl, e2e;
  for (auto& w : workers) {
    WorkerStats& s = w->stats();
    r.requests_ok += s.ok;
    r.requests_failed += s.failed;
    for (const auto& [code, n] : s.errors) r.errors[code] += n;
    if (r.first_error.empty()) r.first_error = s.first_error;
    r.prompt_tokens += s.prompt_tokens;
    r.generated_tokens += s.generated_tokens;
    ttft.Merge(s.ttft);
    itl.Merge(s.itl);
    e2e.Merge(s.e2e);
  }
  r.ttft = ttft.Compute();
  r.itl = itl.Compute();
  r.e2e = e2e.Compute();
  return r;
}

}  // namespace deltaserve::loadtest
