// What `dynahug scan PATH...` analyses: the paths a user gave, expanded into
// one entry per file.
//
// - A file argument is taken as given (a symlink named on the command line
//   is followed: the user chose it).
// - A directory is walked recursively in name order. Inside it, a symlink
//   is followed only when its target lies inside the scanned tree; a
//   directory symlink is never followed (no loops, no escape). The scanned
//   tree of a path inside a Hugging Face cache repository
//   (`.../models--ORG--NAME/...`) is that repository folder, so a snapshot's
//   links into `blobs/` are followed however deep the scan started.
// - Hugging Face cache paths (`models--ORG--NAME/snapshots/REV/FILE`, also
//   `datasets--` and `spaces--`) are named as the user thinks of them:
//   repo, revision, file.
// - Entries that resolve to the same file (device and inode) share one
//   analysis: `blob` indexes InputSet::blobs, which is what gets analysed.
//
// Thread safety: pure functions over the filesystem.
#ifndef DYNAHUG_RUNTIME_CLI_SCAN_INPUTS_H_
#define DYNAHUG_RUNTIME_CLI_SCAN_INPUTS_H_

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dynahug::runtime {

// A file of a Hugging Face hub cache.
struct HubRef {
  std::string kind;      // "model", "dataset" or "space"
  std::string repo;      // "ORG/NAME"
  std::string revision;  // the snapshot folder (a commit hash)
  std::string file;      // path inside the snapshot, '/'-separated
};

struct ScanInput {
  // The path as the user would name it (under the argument they gave).
  std::string path;
  std::optional<HubRef> hub;
  // Index into InputSet::blobs; unset when the entry is not analysed.
  std::optional<size_t> blob;
  // Set when the entry is not analysed: why (symlink leaving the tree,
  // not a regular file, unreadable, ...).
  std::string skip_reason;
  // Set when the entry could not be read at all (missing argument,
  // permission denied): an error result.
  std::string error;
};

struct InputSet {
  std::vector<ScanInput> inputs;
  // Resolved paths of the distinct files to analyse, in first-seen order.
  std::vector<std::string> blobs;
};

// Expands `args` (files and directories) into scan inputs.
InputSet CollectScanInputs(const std::vector<std::string>& args);

// The hub reference of `path` when its components contain
// `<kind>s--ORG--NAME/snapshots/REV/FILE...`; nullopt otherwise.
std::optional<HubRef> ParseHubPath(std::string_view path);

// "ORG/NAME@REV:FILE" style display of a hub reference
// ("model ORG/NAME@abcdef1 config.json" is too long for one line).
std::string HubDisplay(const HubRef& ref);

}  // namespace dynahug::runtime

#endif  // DYNAHUG_RUNTIME_CLI_SCAN_INPUTS_H_
