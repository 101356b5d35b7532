#include "runtime/cli/verdict_json.h"

#include <string>

namespace dynahug::runtime {

void WriteCapabilitiesAndReasons(JsonWriter& w, const proto::Verdict& v) {
  w.Key("capabilities");
  w.BeginArray();
  for (const std::string& c : v.capabilities()) w.String(c);
  w.EndArray();
  w.Key("reasons");
  w.BeginArray();
  for (const proto::Reason& reason : v.reasons()) {
    w.BeginObject();
    w.Field("feature", reason.feature());
    w.Field("weight", reason.weight());
    w.Field("detail", reason.detail());
    w.EndObject();
  }
  w.EndArray();
}

}  // namespace dynahug::runtime
