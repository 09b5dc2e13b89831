#compdef rdist

_rdist_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _RDIST_COMPLETE=complete_zsh rdist)
}

compdef _rdist_completion rdist
