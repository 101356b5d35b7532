#include "features/clustering.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <string_view>

namespace dynahug::features {
namespace {

// Weight of the loader in a routing profile: it separates files without
// globals (plain arrays) but should not split one model saved with pickle
// and with joblib.
constexpr double kLoaderWeight = 0.5;

// Number of '.' in `s`.
int Dots(std::string_view s) {
  return static_cast<int>(std::count(s.begin(), s.end(), '.'));
}

// Weight of a token of `family` in the routing profile (0: not in it): the
// first two levels of global names (1), the loader (kLoaderWeight).
double RoutingWeight(Family family, std::string_view token) {
  switch (family) {
    case Family::kGlobal:
      if (token.starts_with("resolved:") || token.starts_with("type:")) {
        return 0;
      }
      if (token.starts_with("stub:")) token.remove_prefix(5);
      return Dots(token) <= 1 ? 1 : 0;
    case Family::kStatic:
      if (token.starts_with("global:")) {
        return Dots(token.substr(7)) <= 1 ? 1 : 0;
      }
      return 0;
    case Family::kExit:
      return token.starts_with("loader:") ? kLoaderWeight : 0;
    default:
      return 0;
  }
}

SparseVector Normalized(std::vector<Feature> entries) {
  double norm = 0;
  for (const Feature& f : entries) norm += f.value * f.value;
  if (norm <= 0) return SparseVector();
  const double inv = 1 / std::sqrt(norm);
  for (Feature& f : entries) f.value *= inv;
  return SparseVector(std::move(entries));
}

}  // namespace

SparseVector RoutingProfile(const SparseVector& features) {
  std::vector<Feature> out;
  for (const Feature& f : features.entries()) {
    const Family family = FamilyOfIndex(f.index);
    double weight = 0;
    for (const std::string& t : f.tokens) {
      weight = std::max(weight, RoutingWeight(family, t));
    }
    if (weight > 0) out.push_back(Feature{f.index, weight, f.tokens});
  }
  return Normalized(std::move(out));
}

SparseVector Centroid(const std::vector<const SparseVector*>& profiles) {
  // Indices are summed in a std::map: the summation order per index is the
  // order of `profiles`, whatever the platform.
  std::map<uint32_t, Feature> sum;
  for (const SparseVector* p : profiles) {
    for (const Feature& f : p->entries()) {
      Feature& s = sum[f.index];
      s.index = f.index;
      s.value += f.value;
      if (s.tokens.empty()) s.tokens = f.tokens;
    }
  }
  std::vector<Feature> entries;
  entries.reserve(sum.size());
  for (auto& [index, f] : sum) entries.push_back(std::move(f));
  return Normalized(std::move(entries));
}

double Cosine(const SparseVector& a, const SparseVector& b) {
  double dot = 0;
  const auto& x = a.entries();
  const auto& y = b.entries();
  size_t i = 0, j = 0;
  while (i < x.size() && j < y.size()) {
    if (x[i].index < y[j].index) {
      ++i;
    } else if (y[j].index < x[i].index) {
      ++j;
    } else {
      dot += x[i++].value * y[j++].value;
    }
  }
  return dot;
}

std::vector<int> ClusterGroups(const std::vector<GroupProfile>& groups,
                               const ClusterOptions& options) {
  const int n = static_cast<int>(groups.size());
  if (n == 0) return {};
  // Average-linkage distances between active clusters, updated with the
  // Lance-Williams formula; cluster i is represented by its lowest group.
  std::vector<std::vector<double>> d(n, std::vector<double>(n, 0));
  for (int i = 0; i < n; ++i) {
    for (int j = i + 1; j < n; ++j) {
      d[i][j] = d[j][i] = 1 - Cosine(groups[i].profile, groups[j].profile);
    }
  }
  std::vector<int> size(n, 1);
  std::vector<bool> active(n, true);
  std::vector<int> owner(n);  // group -> representative
  for (int i = 0; i < n; ++i) owner[i] = i;
  int clusters = n;
  auto can_link = [&](int a, int b) {
    return groups[a].task == groups[b].task;
  };
  auto merge = [&](int a, int b) {  // b into a
    for (int c = 0; c < n; ++c) {
      if (!active[c] || c == a || c == b) continue;
      const double v =
          (size[a] * d[a][c] + size[b] * d[b][c]) / (size[a] + size[b]);
      d[a][c] = d[c][a] = v;
    }
    size[a] += size[b];
    active[b] = false;
    for (int& o : owner) {
      if (o == b) o = a;
    }
    --clusters;
  };
  // Closest linkable pair of active clusters (filter: extra condition on
  // the pair); ties to the first pair in (i, j) order.
  auto closest = [&](auto filter, int* best_a, int* best_b) {
    double best = std::numeric_limits<double>::infinity();
    *best_a = *best_b = -1;
    for (int i = 0; i < n; ++i) {
      if (!active[i]) continue;
      for (int j = i + 1; j < n; ++j) {
        if (!active[j] || !can_link(i, j) || !filter(i, j)) continue;
        if (d[i][j] < best) {
          best = d[i][j];
          *best_a = i;
          *best_b = j;
        }
      }
    }
    return best;
  };
  auto any = [](int, int) { return true; };
  while (clusters > 1) {
    int a, b;
    const double best = closest(any, &a, &b);
    if (a < 0) break;
    if (best > options.merge_distance && clusters <= options.max_clusters) {
      break;
    }
    merge(a, b);
  }
  // Small clusters join their nearest cluster of the same label.
  while (true) {
    int smallest = -1;
    for (int i = 0; i < n; ++i) {
      if (!active[i] || size[i] >= options.min_groups) continue;
      bool has_partner = false;
      for (int j = 0; j < n && !has_partner; ++j) {
        has_partner = j != i && active[j] && can_link(i, j);
      }
      if (!has_partner) continue;
      if (smallest < 0 || size[i] < size[smallest]) smallest = i;
    }
    if (smallest < 0) break;
    int a, b;
    closest([&](int i, int j) { return i == smallest || j == smallest; }, &a,
            &b);
    if (a < 0) break;
    merge(std::min(a, b), std::max(a, b));
  }
  // Number clusters in order of their first group.
  std::vector<int> number(n, -1);
  std::vector<int> out(n);
  int next = 0;
  for (int g = 0; g < n; ++g) {
    const int r = owner[g];
    if (number[r] < 0) number[r] = next++;
    out[g] = number[r];
  }
  return out;
}

int Route(const SparseVector& profile,
          const std::vector<SparseVector>& centroids,
          const std::vector<bool>& allowed) {
  int best = -1;
  double best_cos = -std::numeric_limits<double>::infinity();
  for (size_t c = 0; c < centroids.size(); ++c) {
    if (!allowed.empty() && !allowed[c]) continue;
    const double cos = Cosine(profile, centroids[c]);
    if (cos > best_cos) {
      best_cos = cos;
      best = static_cast<int>(c);
    }
  }
  return best;
}

}  // namespace dynahug::features
