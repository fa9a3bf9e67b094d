// `tokenmill report`: the AI factory scorecard from a ledger file or directory.
#include <iostream>

#include "server/commands.h"
#include "spdlog/spdlog.h"
#include "tokenmill/core/clock.h"
#include "tokenmill/metrics/report.h"

namespace tokenmill {

void AddReportCommand(CLI::App& app, std::function<int()>* action) {
  struct Flags {
    std::string ledger, by = "tenant", since, format = "table";
  };
  auto f = std::make_shared<Flags>();
  CLI::App* cmd = app.add_subcommand(
      "report", "Tokens, latency, energy and cost per tenant, model or day, from a ledger");
  cmd->add_option("--ledger", f->ledger, "Ledger file or directory (serve --ledger-dir)")
      ->required();
  cmd->add_option("--by", f->by, "tenant, model or day")->capture_default_str();
  cmd->add_option("--since", f->since, "Date, RFC 3339 time, or an age like 24h / 7d");
  cmd->add_option("--format", f->format, "table, markdown or json")->capture_default_str();
  cmd->callback([f, action] {
    *action = [f]() -> int {
      metrics::ReportOptions opts;
      opts.ledger_path = f->ledger;
      auto by = metrics::ParseReportGroupBy(f->by);
      auto format = metrics::ParseReportFormat(f->format);
      if (!by.ok() || !format.ok()) {
        spdlog::error("{}", (!by.ok() ? by.status() : format.status()).ToString());
        return 2;
      }
      opts.by = *by;
      opts.format = *format;
      if (!f->since.empty()) {
        auto since = metrics::ParseSince(f->since, SystemClock::Get().WallSeconds());
        if (!since.ok()) {
          spdlog::error("--since: {}", since.status().ToString());
          return 2;
        }
        opts.since_unix_s = *since;
      }
      auto text = metrics::RunReport(opts);
      if (!text.ok()) {
        spdlog::error("{}", text.status().ToString());
        return 2;
      }
      std::cout << *text;
      if (!text->empty() && text->back() != '\n') std::cout << "\n";
      return 0;
    };
  });
}

}  // namespace tokenmill
