# Tests of the embedded interpreter and loaders (runtime/embed/interpreter.*,
# runtime/embed/loader.*). Included from tests/runtime/CMakeLists.txt.
dynahug_add_gtest(embed_interpreter_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/embed_interpreter_test.cc
  LIBS dynahug::embed)
# The forked-child test streams through the production event channel.
dynahug_add_gtest(embed_loader_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/embed_loader_test.cc
  LIBS dynahug::embed dynahug::sandbox absl::time)
dynahug_add_gtest(embed_loader_tamper_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/embed_loader_tamper_test.cc
  LIBS dynahug::embed)
dynahug_add_gtest(embed_disguise_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/embed_disguise_test.cc
  LIBS dynahug::embed absl::strings)
# The loader table (runtime/embed/loader_table.*) against the container
# formats it names.
dynahug_add_gtest(loader_table_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/loader_table_test.cc
  LIBS dynahug::embed dynahug::container)
