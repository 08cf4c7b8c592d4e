# nginx addon Makefile fragment for nginx-triage (ngx_http_triage_module).
#
# Sourced by nginx's auto/make after objs/Makefile has been written, with the
# variables set in ./config still in scope. Adds the cargo rule that builds
# the Rust static library linked into the module. Keep this POSIX sh.

if [ "$ngx_triage_enabled" = YES ]; then

    # make cannot see Rust sources or Cargo.lock changes, so cargo is run on
    # every make and decides itself whether anything needs rebuilding; a
    # pseudo target instead of .PHONY works with both GNU and BSD make.
    #
    # --no-default-features: no "export-modules" (nginx generates the module
    # table) and no "vendored" (bindings come from this nginx tree, found via
    # NGINX_SOURCE_DIR / NGINX_BUILD_DIR).

    ngx_triage_cargo_opt=${NGX_TRIAGE_CARGO_OPT:+" $NGX_TRIAGE_CARGO_OPT"}

    cat << END                                                >> $NGX_MAKEFILE

.NGX_TRIAGE_CARGO: ;

$ngx_triage_lib:	.NGX_TRIAGE_CARGO
	NGINX_SOURCE_DIR="$ngx_triage_src" \\
	NGINX_BUILD_DIR="$ngx_triage_objs" \\
	"$ngx_triage_cargo" rustc \\
		--manifest-path "$ngx_triage_dir/Cargo.toml" \\
		--lib \\
		--crate-type staticlib \\
		--no-default-features \\
		--profile "$ngx_triage_profile" \\
		--target-dir "$ngx_triage_target_dir"$ngx_triage_cargo_opt

END

    if [ "$ngx_triage_link" = DYNAMIC ]; then
        # the generated .so rule only depends on its C objects: add the
        # library (ngx_module_deps would only reach C objects, we have none)
        cat << END                                            >> $NGX_MAKEFILE
$NGX_OBJS${ngx_dirsep}ngx_http_triage_module$ngx_modext:	$ngx_triage_lib

END
    fi
fi
