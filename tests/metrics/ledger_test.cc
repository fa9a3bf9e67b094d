#include "tokenmill/metrics/ledger.h"

#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace tokenmill::metrics {
namespace {

namespace fs = std::filesystem;

// FakeClock's wall time is 1.7e9 + its monotonic time; 1700006400 is 2023-11-15T00:00:00Z.
constexpr double kMidnight = 1700006400.0;
constexpr double kTwoSecondsBeforeMidnight = kMidnight - 1.7e9 - 2.0;

class LedgerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("ledger-test-" + std::to_string(reinterpret_cast<uintptr_t>(this)));
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  static RequestRecord Record(const std::string& id) {
    RequestRecord r;
    r.request_id = id;
    r.tenant = "acme";
    r.model = "llama";
    r.prompt_tokens = 10;
    r.generated_tokens = 4;
    r.e2e_s = 0.5;
    r.currency = "USD";
    r.finish_reason = "stop";
    return r;
  }

  fs::path dir_;
};

TEST_F(LedgerTest, RotatesAtUtcMidnight) {
  FakeClock clock(kTwoSecondsBeforeMidnight);
  auto writer = LedgerWriter::Open((dir_ / "nested/ledger").string(), clock);
  ASSERT_TRUE(writer.ok()) << writer.status();
  ASSERT_TRUE((*writer)->Append(Record("before")).ok());
  EXPECT_EQ(fs::path((*writer)->current_path()).filename(), "ledger-2023-11-14.jsonl");
  clock.Advance(3.0);
  ASSERT_TRUE((*writer)->Append(Record("after")).ok());
  EXPECT_EQ(fs::path((*writer)->current_path()).filename(), "ledger-2023-11-15.jsonl");
  RequestRecord explicit_time = Record("late-arrival");
  explicit_time.time_unix_s = kMidnight - 0.5;  // finished before midnight, appended after
  ASSERT_TRUE((*writer)->Append(explicit_time).ok());

  auto all = ReadLedger((dir_ / "nested/ledger").string());
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->files.size(), 2u);
  ASSERT_EQ(all->records.size(), 3u);
  EXPECT_EQ(all->records[0].request_id, "before");  // day files in date order
  EXPECT_EQ(all->records[1].request_id, "late-arrival");
  EXPECT_EQ(all->records[2].request_id, "after");
  EXPECT_DOUBLE_EQ(all->records[0].time_unix_s, kMidnight - 2.0);

  auto today = ReadLedger((dir_ / "nested/ledger").string(), kMidnight);
  ASSERT_TRUE(today.ok());
  ASSERT_EQ(today->files.size(), 1u);  // yesterday's file is not even opened
  ASSERT_EQ(today->records.size(), 1u);
  EXPECT_EQ(today->records[0].request_id, "after");
}

TEST_F(LedgerTest, ReaderSkipsAPartlyWrittenLastLine) {
  FakeClock clock(kTwoSecondsBeforeMidnight);
  auto writer = LedgerWriter::Open(dir_.string(), clock);
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Append(Record("a")).ok());
  ASSERT_TRUE((*writer)->Append(Record("b")).ok());
  const std::string path = (*writer)->current_path();
  // A writer caught mid-line: a prefix of a real line, no newline yet.
  const std::string next = ToLedgerJson(Record("c")).dump();
  { std::ofstream(path, std::ios::app) << next.substr(0, next.size() / 2); }
  auto contents = ReadLedger(path);
  ASSERT_TRUE(contents.ok()) << contents.status();
  EXPECT_EQ(contents->records.size(), 2u);
  EXPECT_EQ(contents->num_partial_lines, 1);
  EXPECT_EQ(contents->num_malformed_lines, 0);
  // Even a prefix that happens to be valid JSON is not a record until its newline lands.
  { std::ofstream(path, std::ios::app) << next.substr(next.size() / 2) << "\n{}"; }
  contents = ReadLedger(path);
  ASSERT_TRUE(contents.ok());
  EXPECT_EQ(contents->records.size(), 3u);
  EXPECT_EQ(contents->num_partial_lines, 1);
}

TEST_F(LedgerTest, MalformedCompleteLinesAreSkippedAndCounted) {
  fs::create_directories(dir_);
  const fs::path path = dir_ / "ledger-2023-11-14.jsonl";
  {
    std::ofstream out(path);
    out << ToLedgerJson(Record("a")).dump() << "\n";
    out << "{\"time\": \"garbage\n";  // a crash mid-line, then the server restarted
    out << "\n";
    out << ToLedgerJson(Record("b")).dump() << "\n";
  }
  auto contents = ReadLedger(dir_.string());
  ASSERT_TRUE(contents.ok());
  EXPECT_EQ(contents->records.size(), 2u);
  EXPECT_EQ(contents->num_malformed_lines, 1);
  EXPECT_EQ(contents->num_partial_lines, 0);
}

TEST_F(LedgerTest, ConcurrentAppendsProduceWholeLines) {
  FakeClock clock(kTwoSecondsBeforeMidnight - 3600);
  auto writer = LedgerWriter::Open(dir_.string(), clock);
  ASSERT_TRUE(writer.ok());
  constexpr int kThreads = 4, kPerThread = 250;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        RequestRecord r = Record(absl::StrCat("t", t, "-", i));
        r.tenant = std::string(200, static_cast<char>('a' + t));  // long lines
        ASSERT_TRUE((*writer)->Append(r).ok());
      }
    });
  }
  // Read while writing: never a malformed line.
  for (int i = 0; i < 10; ++i) {
    auto partial = ReadLedger(dir_.string());
    if (partial.ok()) {
      EXPECT_EQ(partial->num_malformed_lines, 0);
    }
  }
  for (auto& t : threads) t.join();
  auto contents = ReadLedger(dir_.string());
  ASSERT_TRUE(contents.ok());
  EXPECT_EQ(contents->records.size(), static_cast<size_t>(kThreads * kPerThread));
  EXPECT_EQ(contents->num_malformed_lines, 0);
  EXPECT_EQ(contents->num_partial_lines, 0);
}

TEST_F(LedgerTest, ErrorsNameThePath) {
  auto missing = ReadLedger((dir_ / "nope").string());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("nope"), std::string::npos);
  fs::create_directories(dir_);
  { std::ofstream(dir_ / "file") << "x"; }
  FakeClock clock;
  auto not_dir = LedgerWriter::Open((dir_ / "file").string(), clock);
  EXPECT_FALSE(not_dir.ok());
  EXPECT_NE(not_dir.status().message().find("file"), std::string::npos);
}

TEST(LedgerFileNameTest, UsesTheUtcDay) {
  EXPECT_EQ(LedgerFileName(kMidnight - 0.001), "ledger-2023-11-14.jsonl");
  EXPECT_EQ(LedgerFileName(kMidnight), "ledger-2023-11-15.jsonl");
}

}  // namespace
}  // namespace tokenmill::metrics
