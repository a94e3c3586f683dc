# node-gyp build of the same addon CMakeLists.txt builds (for users who prefer node-gyp):
#   npx node-gyp rebuild      -> build/Release/xgb_stream_native.node
# libxgboost is the pinned copy that `node scripts/libxgboost.js` puts in .libxgboost/<version> (the
# version in scripts/xgboost-version.json; run by `npm install`), or the prefix in the XGBOOST_ROOT
# environment variable. Note that `node-gyp rebuild` first deletes build/, including a cmake-js build
# there.
{
  'variables': {
    'xgboost_root%': '<!(node -p "process.env.XGBOOST_ROOT || \'\'")',
    'xgboost_pinned%': '<!(node -p "require(\'./scripts/xgboost-version.json\').version")',
  },
  'targets': [
    {
      'target_name': 'xgb_stream_native',
      'sources': ['native/addon.cc', 'native/booster.cc', 'native/exit_deadline.cc'],
      'include_dirs': ['<!(node -p "require(\'node-addon-api\').include_dir")'],
      # Same ABI and error model as the CMake build: Node-API 8, C++ exceptions on.
      'defines': ['NAPI_VERSION=8', 'NAPI_CPP_EXCEPTIONS', 'NODE_ADDON_API_DISABLE_DEPRECATED'],
      'cflags!': ['-fno-exceptions'],
      'cflags_cc!': ['-fno-exceptions', '-std=gnu++14', '-std=gnu++17'],
      'cflags_cc': ['-std=c++17', '-fvisibility=hidden'],
      'libraries': ['-lxgboost'],
      'xcode_settings': {
        'GCC_ENABLE_CPP_EXCEPTIONS': 'YES',
        'CLANG_CXX_LANGUAGE_STANDARD': 'c++17',
      },
      'msvs_settings': {
        'VCCLCompilerTool': { 'ExceptionHandling': 1, 'AdditionalOptions': ['/std:c++17'] },
      },
      'conditions': [
        ['xgboost_root!=""', {
          'include_dirs': ['<(xgboost_root)/include'],
          'library_dirs': ['<(xgboost_root)/lib', '<(xgboost_root)/lib64'],
          'ldflags': ['-Wl,-rpath,<(xgboost_root)/lib', '-Wl,-rpath,<(xgboost_root)/lib64'],
        }, {
          # The pinned copy, found relative to the addon (build/Release) so the package can move.
          'include_dirs': ['<(module_root_dir)/.libxgboost/<(xgboost_pinned)/include'],
          'library_dirs': ['<(module_root_dir)/.libxgboost/<(xgboost_pinned)/xgboost/lib'],
          'ldflags': ["-Wl,-rpath,'$$ORIGIN/../../.libxgboost/<(xgboost_pinned)/xgboost/lib'"],
        }],
      ],
    },
  ],
}
