" ftdetect/nn.vim: .nn files are nnc models
au BufRead,BufNewFile *.nn setfiletype nn
