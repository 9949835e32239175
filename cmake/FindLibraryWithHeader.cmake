# baleine_find_library_with_header(PKG HEADER LIBNAMES...)
# Shared by FindNCCL and FindCUDNN: locate one header and one shared library, honouring
# <PKG>_ROOT (CMake or environment) -- e.g. the nvidia/<pkg> folder of a pip wheel on machines
# without a system copy -- then define the imported target <PKG>::<PKG>.
macro(baleine_find_library_with_header PKG HEADER)
  find_path(${PKG}_INCLUDE_DIR ${HEADER}
            HINTS ${${PKG}_ROOT} $ENV{${PKG}_ROOT} ${CUDAToolkit_INCLUDE_DIRS}
            PATH_SUFFIXES include)
  find_library(${PKG}_LIBRARY NAMES ${ARGN}
               HINTS ${${PKG}_ROOT} $ENV{${PKG}_ROOT} ${CUDAToolkit_LIBRARY_DIR}
               PATH_SUFFIXES lib lib64)
  include(FindPackageHandleStandardArgs)
  find_package_handle_standard_args(${PKG} REQUIRED_VARS ${PKG}_INCLUDE_DIR ${PKG}_LIBRARY)
  if(${PKG}_FOUND AND NOT TARGET ${PKG}::${PKG})
    add_library(${PKG}::${PKG} UNKNOWN IMPORTED)
    set_target_properties(${PKG}::${PKG} PROPERTIES IMPORTED_LOCATION "${${PKG}_LIBRARY}"
                          INTERFACE_INCLUDE_DIRECTORIES "${${PKG}_INCLUDE_DIR}")
  endif()
endmacro()
