# Run by CMakeLists.txt as `cmake -P` in a child process: loads xgboost's CMake package config and
# exits non-zero if it is missing or fails to load, so the parent can fall back instead of stopping.
#
# Why a child process: Debian's libxgboost-dev 1.7.4 config also exports xgboost::runxgboost, the
# command-line tool of the separate `xgboost` package, and raises a FATAL_ERROR when /usr/bin/xgboost
# is absent (the usual case). A FATAL_ERROR cannot be caught inside one CMake run.
find_package(xgboost 1.4 CONFIG QUIET HINTS ${XGBOOST_ROOT})
if(NOT TARGET xgboost::xgboost)
  message(FATAL_ERROR "no usable xgboost package config")
endif()
message(STATUS "${xgboost_DIR}")
