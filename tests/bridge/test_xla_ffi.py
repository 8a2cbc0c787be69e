"""The transcribed struct layout agrees with the header jaxlib ships."""

import shutil
import subprocess
from pathlib import Path

import jax
import pytest

from pymc_jaxops.bridge import _xla_ffi as abi

CHECKS = {
    "FRAME_EXTENSION_START": "offsetof(XLA_FFI_CallFrame, extension_start)",
    "FRAME_API": "offsetof(XLA_FFI_CallFrame, api)",
    "FRAME_STAGE": "offsetof(XLA_FFI_CallFrame, stage)",
    "FRAME_ARGS_SIZE": "offsetof(XLA_FFI_CallFrame, args) + offsetof(XLA_FFI_Args, size)",
    "FRAME_ARGS_ARGS": "offsetof(XLA_FFI_CallFrame, args) + offsetof(XLA_FFI_Args, args)",
    "FRAME_RETS_SIZE": "offsetof(XLA_FFI_CallFrame, rets) + offsetof(XLA_FFI_Rets, size)",
    "FRAME_RETS_RETS": "offsetof(XLA_FFI_CallFrame, rets) + offsetof(XLA_FFI_Rets, rets)",
    "EXT_TYPE": "offsetof(XLA_FFI_Extension_Base, type)",
    "METAEXT_METADATA": "offsetof(XLA_FFI_Metadata_Extension, metadata)",
    "META_VERSION_MAJOR": "offsetof(XLA_FFI_Metadata, api_version.major_version)",
    "META_VERSION_MINOR": "offsetof(XLA_FFI_Metadata, api_version.minor_version)",
    "META_TRAITS": "offsetof(XLA_FFI_Metadata, traits)",
    "META_STATE_TYPE_ID": "offsetof(XLA_FFI_Metadata, state_type_id)",
    "API_ERROR_CREATE": "offsetof(XLA_FFI_Api, XLA_FFI_Error_Create)",
    "BUF_DTYPE": "offsetof(XLA_FFI_Buffer, dtype)",
    "BUF_DATA": "offsetof(XLA_FFI_Buffer, data)",
    "BUF_RANK": "offsetof(XLA_FFI_Buffer, rank)",
    "BUF_DIMS": "offsetof(XLA_FFI_Buffer, dims)",
    "API_VERSION_STRUCT_SIZE": "XLA_FFI_Api_Version_STRUCT_SIZE",
    "ERROR_CREATE_ARGS_STRUCT_SIZE": "XLA_FFI_Error_Create_Args_STRUCT_SIZE",
    "ERROR_CREATE_MESSAGE": "offsetof(XLA_FFI_Error_Create_Args, message)",
    "ERROR_CREATE_ERRC": "offsetof(XLA_FFI_Error_Create_Args, errc)",
    "API_MAJOR": "XLA_FFI_API_MAJOR",
    "API_MINOR": "XLA_FFI_API_MINOR",
}


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler to read the header")
def test_offsets_match_the_c_header(tmp_path: Path) -> None:
    header = Path(jax.ffi.include_dir()) / "xla" / "ffi" / "api" / "c_api.h"
    checks = dict(CHECKS)
    if "XLA_FFI_InternalExtension" in header.read_text():  # API 0.5 renamed the base
        checks["EXT_TYPE"] = "offsetof(XLA_FFI_InternalExtension, type)"
    body = "\n".join(f'  printf("{k} %ld\\n", (long)({v}));' for k, v in checks.items())
    src = tmp_path / "layout.c"
    src.write_text(
        '#include <stdio.h>\n#include <stddef.h>\n#include "xla/ffi/api/c_api.h"\n'
        f"int main(void) {{\n{body}\n  return 0;\n}}\n"
    )
    exe = tmp_path / "layout"
    compile_cmd = ["cc", "-I", jax.ffi.include_dir(), str(src), "-o", str(exe)]
    subprocess.run(compile_cmd, check=True, timeout=120)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True, timeout=60).stdout
    measured = {k: int(v) for k, v in (line.split() for line in out.splitlines())}
    assert measured == {k: getattr(abi, k) for k in CHECKS}


def test_dtype_codes_are_xla_primitive_types() -> None:
    # xla_data.proto: S32=4, S64=5, F32=11, F64=12.
    assert sorted(abi.DTYPE_CODES.values()) == [4, 5, 11, 12]
