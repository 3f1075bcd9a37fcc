# bash completion for totp-enroll(1)                       -*- shell-script -*-
# Installed as /usr/share/bash-completion/completions/totp-enroll.
# shellcheck disable=SC2207 # COMPREPLY=($(compgen ...)) is the completion idiom

_totp_enroll() {
    local cur prev words cword
    _init_completion || return

    local commands="status disable recovery-codes import unlock forget-devices list rekey help"
    local global="--config --state-dir --key-file --help --version"

    case $prev in
        --config | --key-file | --from-google-authenticator | --from-oath-usersfile | --from-key-file)
            _filedir
            return
            ;;
        --state-dir | --from-state-dir)
            _filedir -d
            return
            ;;
        --user)
            COMPREPLY=($(compgen -u -- "$cur"))
            return
            ;;
        --qr)
            COMPREPLY=($(compgen -W "utf8 ansi none" -- "$cur"))
            return
            ;;
        --algorithm)
            COMPREPLY=($(compgen -W "SHA1 SHA256 SHA512" -- "$cur"))
            return
            ;;
        --digits)
            COMPREPLY=($(compgen -W "6 7 8" -- "$cur"))
            return
            ;;
        --period)
            COMPREPLY=($(compgen -W "30 60" -- "$cur"))
            return
            ;;
    esac

    # The first word that is not an option (nor an option's value) is the command.
    local i command=""
    for ((i = 1; i < cword; i++)); do
        case ${words[i]} in
            --config | --state-dir | --key-file | --user | --qr | --algorithm | --digits | \
                --period | --counter | --from-google-authenticator | --from-oath-usersfile | \
                --from-state-dir | --from-key-file)
                ((i++))
                ;;
            -*) ;;
            *)
                command=${words[i]}
                break
                ;;
        esac
    done

    local opts
    case $command in
        "") opts="$global --user --replace --qr" ;;
        status) opts="$global --user --json" ;;
        disable | recovery-codes | forget-devices) opts="$global --user" ;;
        import) opts="$global --user --secret-stdin --from-google-authenticator --from-oath-usersfile --from-state-dir --from-key-file --algorithm --digits --period --hotp --counter --replace" ;;
        unlock) opts="$global --user" ;;
        list) opts="$global --json" ;;
        rekey) opts="$global --stage" ;;
        help) COMPREPLY=($(compgen -W "$commands" -- "$cur")); return ;;
        *) opts="$global" ;;
    esac

    if [[ -z $command && $cur != -* ]]; then
        COMPREPLY=($(compgen -W "$commands" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    fi
} &&
    complete -F _totp_enroll totp-enroll

# ex: filetype=sh
