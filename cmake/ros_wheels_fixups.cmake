# Injected with -DCMAKE_PROJECT_INCLUDE when building against the ROS 2 PyPI wheels
# (scripts/setup.sh). The wheels' exported *__rosidl_generator_py targets carry include
# directories of the machine that built the wheels (/opt/python/...). At the end of
# configure, drop those and add this interpreter's Python and NumPy include directories.
# Harmless on a normal ROS distro install, where no such paths exist.
find_package(Python3 REQUIRED COMPONENTS Interpreter Development NumPy)

function(wallie_fix_wheel_include_dirs)
  get_property(_targets DIRECTORY "${CMAKE_SOURCE_DIR}" PROPERTY IMPORTED_TARGETS)
  foreach(_t IN LISTS _targets)
    get_target_property(_dirs ${_t} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _dirs)
      continue()
    endif()
    set(_new "")
    set(_changed FALSE)
    foreach(_d IN LISTS _dirs)
      if(_d MATCHES "^/opt/python/")
        set(_changed TRUE)
      else()
        list(APPEND _new "${_d}")
      endif()
    endforeach()
    if(_changed)
      list(APPEND _new ${Python3_INCLUDE_DIRS} ${Python3_NumPy_INCLUDE_DIRS})
      set_target_properties(${_t} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_new}")
    endif()
  endforeach()
endfunction()

cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL wallie_fix_wheel_include_dirs)
