# Tests of the in-interpreter observers (hooks/event_sink, audit_hook,
# call_profiler, integrity_diff). Included from tests/hooks/CMakeLists.txt.
# Instrumented-unpickler behaviour is covered end to end by
# tests/runtime/embed_loader_test.
dynahug_add_gtest(observer_event_sink_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/observer_event_sink_test.cc
  LIBS dynahug::observers)
foreach(t audit_hook call_profiler integrity_diff unpickler_hooks)
  dynahug_add_gtest(observer_${t}_test
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/observer_${t}_test.cc
    LIBS dynahug::embed)
endforeach()
# Native inspector (maps, stacks, disassembly) without an interpreter; its
# NATIVE events through the audit hook with one.
dynahug_add_gtest(native_inspector_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/native_inspector_test.cc
  LIBS dynahug::observers)
dynahug_add_gtest(observer_native_inspector_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/observer_native_inspector_test.cc
  LIBS dynahug::embed)
